import CLibUV

/// A libuv call that failed: the call's name and libuv's error code and text.
public struct UVError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public let call: String

    public init(code: Int32, call: String) {
        self.code = code
        self.call = call
    }

    public var name: String { String(cString: uv_err_name(code)) }
    public var description: String { "\(call) failed: \(String(cString: uv_strerror(code))) (\(name))" }

    static func check(_ rc: Int32, _ call: String) throws(UVError) {
        if rc < 0 { throw UVError(code: rc, call: call) }
    }
}

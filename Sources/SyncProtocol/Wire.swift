/// Why bytes from the wire could not be decoded.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(needed: Int, available: Int)
    case unknownTag(field: String, value: UInt64)
    case tooLarge(field: String, count: Int, limit: Int)
    case invalidText(field: String)
    case trailingBytes(count: Int)
    /// A message of another major wire version: the peer's version, then ours.
    case unsupportedVersion(peerMajor: UInt8, peerMinor: UInt8, ourMajor: UInt8, ourMinor: UInt8)
    case frameTooLarge(count: Int, limit: Int)
    /// A field that decodes but names something it may not (a snapshot slot of another member).
    case invalidValue(field: String, detail: String)

    public var description: String {
        switch self {
        case .truncated(let needed, let available):
            return "message truncated: needed \(needed) more bytes, \(available) available"
        case .unknownTag(let field, let value): return "unknown \(field) tag \(value)"
        case .tooLarge(let field, let count, let limit): return "\(field) too large: \(count) > \(limit)"
        case .invalidText(let field): return "\(field) is not valid UTF-8"
        case .trailingBytes(let count): return "\(count) unexpected bytes after the message"
        case .invalidValue(let field, let detail): return "invalid \(field): \(detail)"
        case .unsupportedVersion(let peerMajor, let peerMinor, let ourMajor, let ourMinor):
            return "peer speaks wire format \(peerMajor).\(peerMinor), this node speaks \(ourMajor).\(ourMinor); "
                + "upgrade the older side"
        case .frameTooLarge(let count, let limit): return "frame of \(count) bytes exceeds the limit of \(limit)"
        }
    }
}

/// Appends big-endian fixed-width integers and length-prefixed byte strings.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init(capacity: Int = 64) { bytes.reserveCapacity(capacity) }

    public mutating func write(_ value: UInt8) { bytes.append(value) }
    public mutating func write(_ value: UInt16) { writeInteger(value) }
    public mutating func write(_ value: UInt32) { writeInteger(value) }
    public mutating func write(_ value: UInt64) { writeInteger(value) }
    public mutating func write(_ value: Int64) { writeInteger(UInt64(bitPattern: value)) }
    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    private mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        var big = value.bigEndian
        withUnsafeBytes(of: &big) { bytes.append(contentsOf: $0) }
    }

    /// Raw bytes, no length prefix (for fixed-size fields such as keys).
    public mutating func writeRaw(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }

    /// A u32 length then the bytes.
    public mutating func writeBytes(_ raw: [UInt8]) {
        write(UInt32(raw.count))
        bytes.append(contentsOf: raw)
    }

    public mutating func writeString(_ text: String) { writeBytes(Array(text.utf8)) }
}

/// Reads what `ByteWriter` wrote; every read checks the remaining length.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
    }

    public var remaining: Int { bytes.count - offset }

    private mutating func take(_ count: Int) throws(WireError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw .truncated(needed: count, available: remaining) }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// Reads straight from the buffer: a field this small is not worth a slice (which
    /// retains and releases the buffer).
    private mutating func readInteger<T: FixedWidthInteger>(_: T.Type) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard size <= remaining else { throw .truncated(needed: size, available: remaining) }
        var value: T = 0
        for index in offset..<offset + size { value = value << 8 | T(bytes[index]) }
        offset += size
        return value
    }

    public mutating func readUInt8() throws(WireError) -> UInt8 { try readInteger(UInt8.self) }
    public mutating func readUInt16() throws(WireError) -> UInt16 { try readInteger(UInt16.self) }
    public mutating func readUInt32() throws(WireError) -> UInt32 { try readInteger(UInt32.self) }
    public mutating func readUInt64() throws(WireError) -> UInt64 { try readInteger(UInt64.self) }
    public mutating func readInt64() throws(WireError) -> Int64 { Int64(bitPattern: try readUInt64()) }
    public mutating func readBool() throws(WireError) -> Bool { try readUInt8() != 0 }

    public mutating func readRaw(_ count: Int) throws(WireError) -> [UInt8] { Array(try take(count)) }

    public mutating func readBytes(field: String, limit: Int) throws(WireError) -> [UInt8] {
        let count = Int(try readUInt32())
        guard count <= limit else { throw .tooLarge(field: field, count: count, limit: limit) }
        return Array(try take(count))
    }

    public mutating func readString(field: String, limit: Int = 1024) throws(WireError) -> String {
        let raw = try readBytes(field: field, limit: limit)
        // Decoding repairs bytes that are not UTF-8 (with U+FFFD), so they come back unchanged
        // only when they were valid. (String(validating:) costs several times more here.)
        let text = String(decoding: raw, as: UTF8.self)
        guard text.utf8.count == raw.count, text.utf8.elementsEqual(raw) else { throw .invalidText(field: field) }
        return text
    }

    /// Reads a collection count and refuses one larger than `limit` before allocating.
    public mutating func readCount(field: String, limit: Int) throws(WireError) -> Int {
        let count = Int(try readUInt32())
        guard count <= limit else { throw .tooLarge(field: field, count: count, limit: limit) }
        return count
    }

    public func expectEnd() throws(WireError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }
}

import Foundation
import NodeKit

#if canImport(Glibc)
    import Glibc
#endif

/// A lane's TCP connection for the latency run. The kernel stamps each answer with the time
/// its bytes reached the lane's socket (SO_TIMESTAMPNS), so the latency a POS on its own
/// machine would see can be told apart from the time this lane's thread then took to be
/// scheduled on the two cores it shares with the node.
final class TimedLane {
    private let descriptor: Int32
    private var pending: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 4096)
    private var control = [UInt8](repeating: 0, count: 128)

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    init(port: UInt16) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var on: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        guard setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &on, size) == 0,
            setsockopt(descriptor, SOL_SOCKET, SO_TIMESTAMPNS, &on, size) == 0
        else {
            close(descriptor)
            throw Failure(description: "setsockopt: \(String(cString: strerror(errno)))")
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(descriptor)
            throw Failure(description: "connect to port \(port): \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(descriptor) }

    /// The realtime clock, in seconds: the clock the kernel's stamps are read on.
    static func realNow() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// Sends `line` and reads one answer line. Returns the answer and the realtime second
    /// at which the kernel queued the segment that completed it on this socket; throws when
    /// the answer came without the kernel's stamp.
    func exchange(_ line: String) throws -> (answer: String, arrived: Double) {
        var bytes = Array(line.utf8)
        bytes.append(10)
        var sent = 0
        while sent < bytes.count {
            let written = bytes[sent...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            guard written > 0 else { throw Failure(description: "write: \(String(cString: strerror(errno)))") }
            sent += written
        }
        var arrived: Double?
        while true {
            if let end = pending.firstIndex(of: 10) {
                let answer = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeSubrange(...end)
                guard let arrived else {
                    throw Failure(description: "an answer came without the kernel's receive stamp")
                }
                return (answer, arrived)
            }
            let (count, stamp) = receive()
            guard count > 0 else { throw Failure(description: "the node closed the lane or the read failed") }
            pending += chunk[..<count]
            if let stamp { arrived = stamp }
        }
    }

    /// One recvmsg: the bytes read into `chunk`, and the kernel's stamp when there is one.
    private func receive() -> (Int, Double?) {
        chunk.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { control in
                var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &vector) { vector in
                    var message = msghdr()
                    message.msg_iov = vector
                    message.msg_iovlen = 1
                    message.msg_control = control.baseAddress
                    message.msg_controllen = control.count
                    let count = recvmsg(descriptor, &message, 0)
                    guard count > 0 else { return (count, nil) }
                    // One control message at most: struct cmsghdr (length, level, type), then
                    // a struct timespec at the next 8-byte boundary.
                    let headerSize = MemoryLayout<cmsghdr>.size
                    guard message.msg_controllen >= headerSize + MemoryLayout<timespec>.size else {
                        return (count, nil)
                    }
                    let header = control.loadUnaligned(as: cmsghdr.self)
                    guard header.cmsg_level == SOL_SOCKET, header.cmsg_type == SO_TIMESTAMPNS else {
                        return (count, nil)
                    }
                    let time = control.loadUnaligned(fromByteOffset: headerSize, as: timespec.self)
                    return (count, Double(time.tv_sec) + Double(time.tv_nsec) / 1e9)
                }
            }
        }
    }
}

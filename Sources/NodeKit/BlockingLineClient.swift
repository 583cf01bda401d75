import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A plain blocking TCP client that sends and receives newline-delimited lines. For command
/// line tools and test harnesses, never for the loop.
public final class BlockingLineClient {
    private var descriptor: Int32 = -1
    private var pending: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: 4096)
    /// Room for the kernel's receive stamp, once `stampArrivals` asked for it.
    private var control: [UInt8] = []
    private var pendingArrival: Double?
    /// When the kernel queued the bytes that completed the last line read, in realtime-clock
    /// seconds, once `stampArrivals` was called. Nil before, and for bytes the kernel did not
    /// stamp: Linux turns stamping on a moment after a socket first asks for it.
    public private(set) var lastArrival: Double?

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init(connectTo address: SocketAddress, timeoutSeconds: Int = 10) throws {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(address.host, String(address.port), &hints, &result)
        guard rc == 0, let info = result else {
            throw Failure(description: "cannot resolve \(address.host)")
        }
        defer { freeaddrinfo(result) }
        descriptor = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard descriptor >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard Self.connectRetryingSignals(descriptor, info.pointee.ai_addr, info.pointee.ai_addrlen, timeoutSeconds)
        else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            descriptor = -1
            throw Failure(description: "cannot connect to \(address): \(reason)")
        }
    }

    /// connect(2), finishing a connection a signal interrupted (it goes on in the kernel).
    private static func connectRetryingSignals(
        _ descriptor: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t, _ timeoutSeconds: Int
    ) -> Bool {
        if connect(descriptor, address, length) == 0 { return true }
        guard errno == EINTR else { return false }
        var poller = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        while true {
            let ready = poll(&poller, 1, Int32(timeoutSeconds * 1000))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { return false }
            var error: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &size)
            errno = error
            return error == 0
        }
    }

    /// Connects to a Unix-domain socket.
    public init(unixPath path: String, timeoutSeconds: Int = 10) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(descriptor)
            descriptor = -1
            throw Failure(description: "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(descriptor)
            descriptor = -1
            throw Failure(description: "cannot connect to \(path): \(reason)")
        }
    }

    public func send(line: String) throws {
        var bytes = Array(line.utf8)
        bytes.append(10)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, 0) }
            if written < 0 && errno == EINTR { continue }  // a signal (a child process ending) is not a failure
            guard written > 0 else { throw Failure(description: "send failed: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    /// Asks the kernel to stamp each segment with when it reached this socket
    /// (SO_TIMESTAMPNS), read back as `lastArrival`: the time a peer on its own machine
    /// would see, without this thread's own wake-up.
    public func stampArrivals() throws {
        var on: Int32 = 1
        guard setsockopt(descriptor, SOL_SOCKET, SO_TIMESTAMPNS, &on, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw Failure(description: "SO_TIMESTAMPNS: \(String(cString: strerror(errno)))")
        }
        control = [UInt8](repeating: 0, count: 128)
    }

    /// Reads up to the next newline.
    public func readLine() throws -> String {
        var scanned = 0
        while true {
            if let newline = pending[scanned...].firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                if newline + 1 == pending.count {
                    pending.removeAll(keepingCapacity: true)
                } else {
                    pending.removeFirst(newline + 1)
                }
                lastArrival = pendingArrival
                return line
            }
            scanned = pending.count
            let count =
                control.isEmpty
                ? chunk.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) } : receiveStamped()
            if count < 0 && errno == EINTR { continue }  // a signal (a child process ending) is not a failure
            guard count > 0 else {
                if count == 0 { throw Failure(description: "connection closed by the node") }
                let timedOut = errno == EAGAIN || errno == EWOULDBLOCK
                throw Failure(
                    description: "no answer from the node: \(timedOut ? "timed out" : String(cString: strerror(errno)))"
                )
            }
            pending += chunk[0..<count]
        }
    }

    /// One recvmsg into `chunk`, keeping the kernel's stamp in `pendingArrival`.
    private func receiveStamped() -> Int {
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
                    if count > 0 { pendingArrival = nil }
                    // One control message at most: struct cmsghdr (length, level, type), then
                    // a struct timespec at the next 8-byte boundary.
                    let headerSize = MemoryLayout<cmsghdr>.size
                    if count > 0, message.msg_controllen >= headerSize + MemoryLayout<timespec>.size {
                        let header = control.loadUnaligned(as: cmsghdr.self)
                        if header.cmsg_level == SOL_SOCKET && header.cmsg_type == SO_TIMESTAMPNS {
                            let time = control.loadUnaligned(fromByteOffset: headerSize, as: timespec.self)
                            pendingArrival = Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
                        }
                    }
                    return count
                }
            }
        }
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }
}

import CLibUV

#if canImport(Glibc)
    import Glibc
#endif

/// A host and port, as given on a command line (`127.0.0.1:7400`).
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` (IPv6 hosts in brackets: `[::1]:7400`).
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            return nil
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>) throws(UVError) -> R) throws(UVError) -> R {
        var storage = sockaddr_storage()
        let rc = withUnsafeMutablePointer(to: &storage) { pointer -> Int32 in
            let v4 = pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                uv_ip4_addr(host, Int32(port), $0)
            }
            if v4 == 0 { return 0 }
            return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(host, Int32(port), $0) }
        }
        try UVError.check(rc, "parse address \(description)")
        return try withUnsafePointer(to: &storage) { pointer throws(UVError) -> R in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { addr throws(UVError) -> R in try body(addr)
            }
        }
    }
}

/// A TCP connection on the loop: reads arrive through `onRead`, the end through `onEnd`.
public final class TCPStream: LoopHandle {
    static let readBufferSize = 64 * 1024
    private let readBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: TCPStream.readBufferSize)
    private var connectCallback: ((UVError?) -> Void)?

    /// Bytes read from the peer.
    public var onRead: (([UInt8]) -> Void)?
    /// The peer closed its side (nil) or the connection failed (an error). The stream closes itself.
    public var onEnd: ((UVError?) -> Void)?
    /// Every queued write has reached the kernel (for resuming after back-pressure).
    public var onDrained: (() -> Void)?

    /// Whether this is a TCP connection or a Unix-domain socket connection.
    public let isPipe: Bool

    public init(loop: EventLoop) throws(UVError) {
        isPipe = false
        super.init(type: UV_TCP)
        let rc = uv_tcp_init(loop.raw, tcp)
        if rc < 0 {
            abandon()
            throw UVError(code: rc, call: "uv_tcp_init")
        }
    }

    /// A Unix-domain socket connection (accepted by `PipeListener`).
    public init(pipeOn loop: EventLoop) throws(UVError) {
        isPipe = true
        super.init(type: UV_NAMED_PIPE)
        let rc = uv_pipe_init(loop.raw, UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_pipe_t.self), 0)
        if rc < 0 {
            abandon()
            throw UVError(code: rc, call: "uv_pipe_init")
        }
    }

    var tcp: UnsafeMutablePointer<uv_tcp_t> { UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_tcp_t.self) }
    var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

    /// Connects to `address`; `completion` gets nil on success.
    public func connect(to address: SocketAddress, _ completion: @escaping (UVError?) -> Void) throws(UVError) {
        let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        connectCallback = completion
        do {
            try address.withSockaddr { addr throws(UVError) in
                try UVError.check(
                    uv_tcp_connect(
                        request, tcp, addr,
                        { request, status in
                            guard let request else { return }
                            let stream = LoopHandle.from(
                                request.pointee.handle.map(UnsafeMutableRawPointer.init), as: TCPStream.self)
                            request.deallocate()
                            guard let stream else { return }
                            let callback = stream.connectCallback
                            stream.connectCallback = nil
                            callback?(status < 0 ? UVError(code: status, call: "connect") : nil)
                        }), "uv_tcp_connect \(address)")
            }
        } catch {
            request.deallocate()
            connectCallback = nil
            throw error
        }
        _ = uv_tcp_nodelay(tcp, 1)
    }

    /// Stops delivering reads until `startReading` is called again (back-pressure).
    public func stopReading() {
        guard !isClosing else { return }
        uv_read_stop(stream)
    }

    /// Starts delivering reads to `onRead`.
    public func startReading() throws(UVError) {
        try UVError.check(
            uv_read_start(
                stream,
                { handle, _, buffer in
                    guard let stream = LoopHandle.from(handle.map(UnsafeMutableRawPointer.init), as: TCPStream.self),
                        let buffer
                    else { return }
                    buffer.pointee = uv_buf_init(stream.readBuffer, UInt32(TCPStream.readBufferSize))
                },
                { handle, count, buffer in
                    guard let stream = LoopHandle.from(handle.map(UnsafeMutableRawPointer.init), as: TCPStream.self)
                    else { return }
                    if count > 0, let base = buffer?.pointee.base {
                        let bytes = UnsafeRawBufferPointer(start: base, count: count)
                        stream.onRead?(Array(bytes))
                    } else if count < 0 {
                        let code = Int32(count)
                        stream.finish(code == UV_EOF.rawValue ? nil : UVError(code: code, call: "read"))
                    }
                }), "uv_read_start")
    }

    private func finish(_ error: UVError?) {
        let callback = onEnd
        onEnd = nil
        close()
        callback?(error)
    }

    /// Queues bytes for writing; a failed write ends the stream with the error.
    public func write(_ bytes: [UInt8]) {
        guard !isClosing, !bytes.isEmpty else { return }
        let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
        let memory = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
        memory.initialize(from: bytes, count: bytes.count)
        request.pointee.data = UnsafeMutableRawPointer(memory)
        var buffer = uv_buf_init(
            UnsafeMutableRawPointer(memory).assumingMemoryBound(to: CChar.self), UInt32(bytes.count))
        let rc = uv_write(request, stream, &buffer, 1) { request, status in
            guard let request else { return }
            request.pointee.data?.deallocate()
            let handle = request.pointee.handle
            request.deallocate()
            guard let stream = LoopHandle.from(handle.map(UnsafeMutableRawPointer.init), as: TCPStream.self) else {
                return
            }
            if status < 0 {
                if status != UV_ECANCELED.rawValue { stream.finish(UVError(code: status, call: "write")) }
            } else if stream.queuedBytes == 0 {
                stream.onDrained?()
            }
        }
        if rc < 0 {
            memory.deallocate()
            request.deallocate()
            finish(UVError(code: rc, call: "uv_write"))
        }
    }

    /// Lets queued writes reach the peer (uv_shutdown), then closes. A plain `close()` would
    /// cancel them, so a final frame written just before would be lost.
    public func closeAfterWrites() {
        guard !isClosing else { return }
        onRead = nil
        onEnd = nil
        let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        let rc = uv_shutdown(request, stream) { request, _ in
            guard let request else { return }
            let handle = request.pointee.handle
            request.deallocate()
            LoopHandle.from(handle.map(UnsafeMutableRawPointer.init), as: TCPStream.self)?.close()
        }
        if rc < 0 {
            request.deallocate()
            close()
        }
    }

    /// The peer's IP address as text, or nil when it cannot be read.
    public var peerHost: String? {
        guard !isPipe else { return "local" }
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(tcp, $0, &length) }
        }
        guard rc == 0 else { return nil }
        var name = [CChar](repeating: 0, count: 64)
        let family = Int32(storage.ss_family)
        let named = withUnsafePointer(to: &storage) { pointer -> Int32 in
            if family == AF_INET6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    uv_ip6_name($0, &name, name.count)
                }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_name($0, &name, name.count) }
        }
        guard named == 0 else { return nil }
        let bytes = name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Bytes queued and not yet written to the kernel (back-pressure).
    public var queuedBytes: Int { uv_stream_get_write_queue_size(stream) }

    override func didClose() {
        onRead = nil
        onEnd = nil
        onDrained = nil
        connectCallback = nil
    }

    deinit { readBuffer.deallocate() }
}

/// A listening TCP socket; each accepted connection is handed to `onConnection`.
public final class TCPListener: LoopHandle {
    private let loop: EventLoop
    private var onConnection: ((TCPStream) -> Void)?

    public init(loop: EventLoop) throws(UVError) {
        self.loop = loop
        super.init(type: UV_TCP)
        let rc = uv_tcp_init(loop.raw, UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_tcp_t.self))
        if rc < 0 {
            abandon()
            throw UVError(code: rc, call: "uv_tcp_init")
        }
    }

    /// Binds and listens; returns the port actually bound (useful with port 0).
    @discardableResult
    public func listen(on address: SocketAddress, backlog: Int32 = 511, _ body: @escaping (TCPStream) -> Void)
        throws(UVError) -> UInt16
    {
        let tcp = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_tcp_t.self)
        try address.withSockaddr { addr throws(UVError) in
            try UVError.check(uv_tcp_bind(tcp, addr, 0), "bind \(address)")
        }
        onConnection = body
        try UVError.check(
            uv_listen(
                UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self), backlog,
                { server, status in
                    guard status >= 0,
                        let listener = LoopHandle.from(server.map(UnsafeMutableRawPointer.init), as: TCPListener.self),
                        let client = try? TCPStream(loop: listener.loop)
                    else { return }
                    if uv_accept(server, client.stream) == 0 {
                        _ = uv_tcp_nodelay(client.tcp, 1)
                        listener.onConnection?(client)
                    } else {
                        client.close()
                    }
                }), "listen \(address)")
        var storage = sockaddr_storage()
        var length = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(tcp, $0, &length) }
        }
        try UVError.check(rc, "uv_tcp_getsockname")
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }

    override func didClose() { onConnection = nil }
}

/// A listening Unix-domain socket for local POS software; each connection goes to `onConnection`.
public final class PipeListener: LoopHandle {
    private let loop: EventLoop
    private var onConnection: ((TCPStream) -> Void)?
    public let path: String

    public init(loop: EventLoop, path: String) throws(UVError) {
        self.loop = loop
        self.path = path
        super.init(type: UV_NAMED_PIPE)
        let rc = uv_pipe_init(loop.raw, UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_pipe_t.self), 0)
        if rc < 0 {
            abandon()
            throw UVError(code: rc, call: "uv_pipe_init")
        }
    }

    /// Binds (replacing a stale socket file), restricts it to owner and group, and listens.
    public func listen(mode: mode_t = 0o660, _ body: @escaping (TCPStream) -> Void) throws(UVError) {
        let pipe = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_pipe_t.self)
        unlink(path)
        try UVError.check(uv_pipe_bind(pipe, path), "bind \(path)")
        chmod(path, mode)
        onConnection = body
        try UVError.check(
            uv_listen(
                UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self), 128,
                { server, status in
                    guard status >= 0,
                        let listener = LoopHandle.from(server.map(UnsafeMutableRawPointer.init), as: PipeListener.self),
                        let client = try? TCPStream(pipeOn: listener.loop)
                    else { return }
                    if uv_accept(server, client.stream) == 0 {
                        listener.onConnection?(client)
                    } else {
                        client.close()
                    }
                }), "listen \(path)")
    }

    override func didClose() {
        onConnection = nil
        unlink(path)
    }
}

extension SocketAddress {
    /// A loopback port the kernel says is free now (bind to port 0, read it back, close);
    /// for tests, benchmarks and harnesses. Nil when no socket could be bound.
    public static func freeLoopbackPort() -> UInt16? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        return bound ? UInt16(bigEndian: address.sin_port) : nil
    }
}

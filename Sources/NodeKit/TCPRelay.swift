/// A TCP forwarder whose link can be cut and restored: the harness's way of pulling a
/// store's uplink cable. While cut, it drops every relayed connection and refuses new ones.
public final class TCPRelay {
    private let loop: EventLoop
    private let target: SocketAddress
    private let listener: TCPListener
    private var pairs: [ObjectIdentifier: (TCPStream, TCPStream)] = [:]
    public private(set) var isCut = false
    public private(set) var port: UInt16 = 0

    public init(loop: EventLoop, listen: SocketAddress, target: SocketAddress) throws(UVError) {
        self.loop = loop
        self.target = target
        listener = try TCPListener(loop: loop)
        port = try listener.listen(on: listen) { [unowned self] client in self.accept(client) }
    }

    private func accept(_ client: TCPStream) {
        guard !isCut, let upstream = try? TCPStream(loop: loop) else {
            client.close()
            return
        }
        let id = ObjectIdentifier(client)
        pairs[id] = (client, upstream)
        let onEnd: (UVError?) -> Void = { [unowned self] _ in self.drop(id) }
        client.onEnd = onEnd
        upstream.onEnd = onEnd
        client.onRead = { [unowned upstream] bytes in upstream.write(bytes) }
        upstream.onRead = { [unowned client] bytes in client.write(bytes) }
        do {
            try upstream.connect(to: target) { [unowned self] error in
                if error != nil {
                    self.drop(id)
                } else {
                    try? upstream.startReading()
                }
            }
            try client.startReading()
        } catch {
            drop(id)
        }
    }

    private func drop(_ id: ObjectIdentifier) {
        guard let (client, upstream) = pairs.removeValue(forKey: id) else { return }
        client.close()
        upstream.close()
    }

    /// Drops every relayed connection and refuses new ones until `restore()`.
    public func cut() {
        isCut = true
        for id in Array(pairs.keys) { drop(id) }
    }

    public func restore() { isCut = false }

    /// Connections currently relayed.
    public var connectionCount: Int { pairs.count }

    public func close() {
        cut()
        listener.close()
    }
}

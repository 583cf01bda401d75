/// Faults a relay applies to the link it forwards.
public struct LinkFaults: Sendable, Equatable, CustomStringConvertible {
    /// Added to every chunk, each direction.
    public var latencyMilliseconds: UInt64 = 0
    /// Each direction's bandwidth (0: unlimited).
    public var bytesPerSecond: UInt64 = 0
    /// One-way partitions: bytes towards the target (`up`) or back (`down`) are discarded
    /// while the connection stays open.
    public var dropUp = false
    public var dropDown = false

    public init(
        latencyMilliseconds: UInt64 = 0, bytesPerSecond: UInt64 = 0, dropUp: Bool = false, dropDown: Bool = false
    ) {
        self.latencyMilliseconds = latencyMilliseconds
        self.bytesPerSecond = bytesPerSecond
        self.dropUp = dropUp
        self.dropDown = dropDown
    }

    /// `latency=MS bandwidth=BYTES_PER_S drop=up|down|none`, any subset, any order.
    public init?(parsing text: String) {
        for field in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return nil }
            switch parts[0] {
            case "latency":
                guard let value = UInt64(parts[1]), value <= 60_000 else { return nil }
                latencyMilliseconds = value
            case "bandwidth":
                guard let value = UInt64(parts[1]) else { return nil }
                bytesPerSecond = value
            case "drop":
                guard ["up", "down", "none"].contains(parts[1]) else { return nil }
                dropUp = parts[1] == "up"
                dropDown = parts[1] == "down"
            default: return nil
            }
        }
    }

    public var description: String {
        "latency=\(latencyMilliseconds) bandwidth=\(bytesPerSecond) drop=\(dropUp ? "up" : dropDown ? "down" : "none")"
    }

    var delays: Bool { latencyMilliseconds > 0 || bytesPerSecond > 0 }
}

/// A TCP forwarder whose link can be cut, reset and degraded: the harness's way of pulling
/// a store's uplink cable or making it slow, lossy one way, or thin. While cut, it drops
/// every relayed connection and refuses new ones.
public final class TCPRelay {
    private final class Pair {
        let client: TCPStream
        let upstream: TCPStream
        /// Chunks waiting for their time, per direction: (due, bytes).
        var up: [(UInt64, [UInt8])] = []
        var down: [(UInt64, [UInt8])] = []
        var upFree: UInt64 = 0
        var downFree: UInt64 = 0
        init(client: TCPStream, upstream: TCPStream) {
            self.client = client
            self.upstream = upstream
        }
    }

    private let loop: EventLoop
    private let target: SocketAddress
    private let listener: TCPListener
    private let pump: LoopTimer
    private var pairs: [ObjectIdentifier: Pair] = [:]
    public private(set) var isCut = false
    public private(set) var port: UInt16 = 0
    /// The faults applied from now on (chunks already delayed keep their time).
    public var faults = LinkFaults() {
        didSet {
            if faults.delays {
                pump.start(after: 2, repeat: 2) { [unowned self] in self.flush() }
            }
        }
    }

    public init(loop: EventLoop, listen: SocketAddress, target: SocketAddress) throws(UVError) {
        self.loop = loop
        self.target = target
        listener = try TCPListener(loop: loop)
        pump = try LoopTimer(loop: loop)
        port = try listener.listen(on: listen) { [unowned self] client in self.accept(client) }
    }

    private func accept(_ client: TCPStream) {
        guard !isCut, let upstream = try? TCPStream(loop: loop) else {
            client.close()
            return
        }
        let id = ObjectIdentifier(client)
        let pair = Pair(client: client, upstream: upstream)
        pairs[id] = pair
        let onEnd: (UVError?) -> Void = { [unowned self] _ in self.drop(id) }
        client.onEnd = onEnd
        upstream.onEnd = onEnd
        client.onRead = { [unowned self, unowned pair] bytes in self.relay(bytes, pair: pair, up: true) }
        upstream.onRead = { [unowned self, unowned pair] bytes in self.relay(bytes, pair: pair, up: false) }
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

    private func relay(_ bytes: [UInt8], pair: Pair, up: Bool) {
        if up ? faults.dropUp : faults.dropDown { return }
        guard faults.delays || !(up ? pair.up : pair.down).isEmpty else {
            (up ? pair.upstream : pair.client).write(bytes)
            return
        }
        let now = loop.nowMilliseconds
        let free = max(now, up ? pair.upFree : pair.downFree)
        let transmit = faults.bytesPerSecond == 0 ? 0 : UInt64(bytes.count) * 1000 / faults.bytesPerSecond
        if up {
            pair.upFree = free + transmit
            pair.up.append((free + transmit + faults.latencyMilliseconds, bytes))
        } else {
            pair.downFree = free + transmit
            pair.down.append((free + transmit + faults.latencyMilliseconds, bytes))
        }
    }

    /// Writes every chunk whose time has come, in order.
    private func flush() {
        let now = loop.nowMilliseconds
        if !faults.delays && pairs.values.allSatisfy({ $0.up.isEmpty && $0.down.isEmpty }) { pump.stop() }
        for pair in pairs.values {
            while let (due, bytes) = pair.up.first, due <= now {
                pair.up.removeFirst()
                pair.upstream.write(bytes)
            }
            while let (due, bytes) = pair.down.first, due <= now {
                pair.down.removeFirst()
                pair.client.write(bytes)
            }
        }
    }

    private func drop(_ id: ObjectIdentifier) {
        guard let pair = pairs.removeValue(forKey: id) else { return }
        pair.client.close()
        pair.upstream.close()
    }

    /// Drops every relayed connection and refuses new ones until `restore()`.
    public func cut() {
        isCut = true
        reset()
    }

    /// Drops every relayed connection at once (both ends see the connection end); new
    /// connections are accepted.
    public func reset() {
        for id in Array(pairs.keys) { drop(id) }
    }

    public func restore() { isCut = false }

    /// Connections currently relayed.
    public var connectionCount: Int { pairs.count }

    public func close() {
        cut()
        pump.close()
        listener.close()
    }
}

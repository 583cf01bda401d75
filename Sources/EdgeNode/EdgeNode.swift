import Foundation
import Logging
import NodeKit
import SyncProtocol

/// Everything an edge node needs to run.
public struct EdgeConfiguration: Sendable {
    public var node: NodeID
    public var dataDirectory: String
    public var keyFile: String
    public var pos: SocketAddress
    public var hub: SocketAddress
    public var hubKey: PublicKey
    public var rules = PartnerRules()
    /// Used until the hub's first signed rules arrive; the rules then take over.
    public var offlinePolicy = OfflinePolicy()
    /// The partner (brand) this store belongs to: selects its economics in the hub's rules.
    public var partner: String?
    public var syncIntervalMilliseconds: UInt64 = 1_000
    /// Optional Unix-domain socket for POS software on the same box.
    public var posSocket: String?
    /// Barcode scanners, one or more per lane.
    public var scanners: [ScannerConfiguration] = []

    public init(
        node: NodeID, dataDirectory: String, keyFile: String, pos: SocketAddress, hub: SocketAddress, hubKey: PublicKey
    ) {
        self.node = node
        self.dataDirectory = dataDirectory
        self.keyFile = keyFile
        self.pos = pos
        self.hub = hub
        self.hubKey = hubKey
    }

    public var databasePath: String { dataDirectory + "/edge.sqlite" }
}

/// A running store node: one libuv loop owning the POS listener, the hub uplink and the
/// timers; a writer thread owning the SQLite replica.
public final class EdgeNode {
    private let loop: EventLoop
    private let writer: DatabaseWriter
    private let uplink: Uplink
    private let service: PosService
    private let listener: TCPListener
    private var pipeListener: PipeListener?
    private var scanners: ScannerService?
    private var connections: [ObjectIdentifier: TCPStream] = [:]
    private var signals: [SignalWatcher] = []
    private var parentWatch: LoopTimer?
    private let logger: Logger
    /// The POS port actually bound.
    public private(set) var posPort: UInt16 = 0

    public init(configuration: EdgeConfiguration, logger: Logger) throws {
        self.logger = logger
        let identity = try KeyFile.load(from: configuration.keyFile)
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let db = try EdgeLedger.open(path: configuration.databasePath)
        // Phone hashes must match across the coalition. The key comes with the hub's signed
        // rules; until the first rules arrive, a provisional key derived from the hub's
        // public key is used (and stays valid for lookups of hashes made with it).
        let active = ActiveRules(
            partner: configuration.partner, rules: configuration.rules, policy: configuration.offlinePolicy,
            provisionalPhoneKey: PhoneNumber.provisionalKey(hub: configuration.hubKey))
        if let stored = try EdgeLedger.loadRules(db, hubKey: configuration.hubKey) { active.install(stored) }
        let ledger = EdgeLedger(node: configuration.node, active: active)
        let watermark = try ledger.status(db).feedWatermark
        loop = try EventLoop()
        writer = try DatabaseWriter(loop: loop, connection: db)
        uplink = try Uplink(
            loop: loop, writer: writer, ledger: ledger, identity: identity,
            settings: .init(
                hub: configuration.hub, hubKey: configuration.hubKey,
                syncIntervalMilliseconds: configuration.syncIntervalMilliseconds),
            feedWatermark: watermark, logger: logger)
        service = PosService(loop: loop, writer: writer, ledger: ledger, uplink: uplink, logger: logger)
        listener = try TCPListener(loop: loop)
        posPort = try listener.listen(on: configuration.pos) { [unowned self] stream in self.accept(stream) }
        if let path = configuration.posSocket {
            let pipe = try PipeListener(loop: loop, path: path)
            try pipe.listen { [unowned self] stream in self.accept(stream) }
            pipeListener = pipe
        }
        let scannerService = ScannerService(loop: loop, logger: logger) { [unowned service] lane, code in
            service.scan(lane: lane, code: code)
        }
        try scannerService.start(configuration.scanners)
        scanners = scannerService
        uplink.start()
        for signal in [SIGINT, SIGTERM] {
            signals.append(try SignalWatcher(loop: loop, signal: signal) { [unowned self] in self.shutdown() })
        }
        logger.info(
            "edge node listening",
            metadata: [
                "pos": "\(configuration.pos.host):\(posPort)",
                "hub": "\(configuration.hub)",
            ])
    }

    /// Requests one connection may have in progress; beyond it, its lines wait and reading
    /// pauses, so one flooding lane cannot crowd the others out of the writer's batches.
    static let maxInFlightPerConnection = 32
    /// Unsent answers beyond which a connection that does not read them stops being read.
    static let maxQueuedBytesPerConnection = 1 << 20

    private func accept(_ stream: TCPStream) {
        let id = ObjectIdentifier(stream)
        connections[id] = stream
        var lines = LineBuffer()
        var waiting: [[UInt8]] = []
        var inFlight = 0
        var paused = false
        var pump: () -> Void = {}
        pump = { [unowned self, unowned stream] in
            while inFlight < Self.maxInFlightPerConnection, !waiting.isEmpty, !stream.isClosing {
                let line = waiting.removeFirst()
                inFlight += 1
                service.handle(
                    line: line, connection: id,
                    reply: { [weak stream] response in stream?.write(Array((response + "\n").utf8)) },
                    finished: {
                        inFlight -= 1
                        pump()
                    })
            }
            let congested =
                !waiting.isEmpty || stream.queuedBytes > Self.maxQueuedBytesPerConnection
            if congested && !paused {
                paused = true
                stream.stopReading()
            } else if !congested && paused {
                paused = false
                try? stream.startReading()
            }
        }
        stream.onDrained = { pump() }
        stream.onRead = { [unowned stream] bytes in
            do {
                waiting += try lines.append(bytes).filter { !$0.isEmpty }
                pump()
            } catch {
                stream.write(Array((PosService.response(id: .null, error: .invalidRequest("\(error)")) + "\n").utf8))
                stream.close()
            }
        }
        stream.onEnd = { [unowned self] _ in
            connections[id] = nil
            service.detach(id)
            pump = {}
        }
        stream.onClose = { [unowned self] in
            connections[id] = nil
            service.detach(id)
            pump = {}
        }
        do { try stream.startReading() } catch { stream.close() }
    }

    /// Shuts down when the process that started this node exits (used by test harnesses).
    public func stopWhenParentExits() throws {
        parentWatch = try watchParent(loop: loop) { [unowned self] in self.shutdown() }
    }

    /// Runs the loop until SIGINT or SIGTERM.
    public func run() {
        loop.run()
        loop.shutdown()
    }

    /// Stops accepting, finishes queued writes, says goodbye to the hub and stops the loop.
    public func shutdown() {
        logger.info("edge node stopping")
        listener.close()
        pipeListener?.close()
        scanners?.close()
        for stream in connections.values { stream.close() }
        uplink.stop()
        writer.close()
        for signal in signals { signal.close() }
        parentWatch?.close()
        loop.stop()
    }
}

/// A POS client over TCP, for `edge pos` and test harnesses.
public final class PosClient {
    private let client: BlockingLineClient
    private var nextID: Int64 = 1

    public init(address: SocketAddress, timeoutSeconds: Int = 10) throws {
        client = try BlockingLineClient(connectTo: address, timeoutSeconds: timeoutSeconds)
    }

    /// Connects over the node's Unix-domain socket.
    public init(socketPath: String, timeoutSeconds: Int = 10) throws {
        client = try BlockingLineClient(unixPath: socketPath, timeoutSeconds: timeoutSeconds)
    }

    /// Waits for the next line the node sends unasked (a scan notification).
    public func nextNotification() throws -> JSONValue {
        try JSONValue.parse(Array(try client.readLine().utf8))
    }

    /// Calls `method`; returns the result, or throws the node's error as a `PosError`.
    public func call(_ method: String, _ params: [String: JSONValue] = [:]) throws -> JSONValue {
        let id = nextID
        nextID += 1
        let request = JSONValue.object([
            "jsonrpc": .string("2.0"), "id": .int(id), "method": .string(method), "params": .object(params),
        ])
        try client.send(line: request.jsonLine)
        let response = try JSONValue.parse(Array(try client.readLine().utf8))
        if let error = response["error"] {
            throw PosError(
                code: Int(error["code"]?.intValue ?? 0), message: error["message"]?.stringValue ?? "unknown error",
                data: error["data"])
        }
        return response["result"] ?? .null
    }

    /// Sends a raw line and returns the raw answer (for tests of malformed input).
    public func raw(_ line: String) throws -> String {
        try client.send(line: line)
        return try client.readLine()
    }
}

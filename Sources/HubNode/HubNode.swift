import Foundation
import Logging
import NodeKit
import SyncProtocol

/// Everything a hub needs to run.
public struct HubConfiguration: Sendable {
    public var dataDirectory: String
    public var keyFile: String
    public var listen: SocketAddress
    public var handshakeTimeoutMilliseconds: UInt64 = 5_000
    /// How often live sessions are checked against revocations.
    public var revocationCheckMilliseconds: UInt64 = 2_000
    /// Handshakes one peer address may start per second (and in a burst).
    public var handshakesPerSecond: Double = 5
    public var handshakeBurst: Double = 10

    public init(dataDirectory: String, keyFile: String, listen: SocketAddress) {
        self.dataDirectory = dataDirectory
        self.keyFile = keyFile
        self.listen = listen
    }

    /// The hub database; nil keeps SQLite's `hub.sqlite` in the data directory.
    public var database: HubDatabaseLocation?

    public var databasePath: String { dataDirectory + "/hub.sqlite" }
    public var databaseLocation: HubDatabaseLocation { database ?? .sqlite(path: databasePath) }
}

/// The hub process: one libuv loop serving store sessions, a writer thread owning the
/// merged ledger in SQLite.
public final class HubNode {
    private let loop: EventLoop
    private let writer: DatabaseWriter
    private let listener: TCPListener
    private let identity: SigningKeyPair
    private let ledger = HubLedger()
    private let configuration: HubConfiguration
    private var sessions: [ObjectIdentifier: StoreSession] = [:]
    private var signals: [SignalWatcher] = []
    private var parentWatch: LoopTimer?
    private let logger: Logger
    private let guardian = HandshakeGuard()
    private var rateLimiter: HandshakeRateLimiter
    private var throttledLogged: UInt64 = 0
    private let revocationTimer: LoopTimer
    public private(set) var port: UInt16 = 0
    /// Live store sessions and their counters, for the operator console and metrics.
    public let status: HubStatus

    public init(configuration: HubConfiguration, logger: Logger, status: HubStatus = HubStatus()) throws {
        self.configuration = configuration
        self.logger = logger
        self.status = status
        rateLimiter = HandshakeRateLimiter(
            ratePerSecond: configuration.handshakesPerSecond, burst: configuration.handshakeBurst)
        identity = try KeyFile.load(from: configuration.keyFile)
        if case .sqlite(let path) = configuration.databaseLocation {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        let db = try HubLedger.open(configuration.databaseLocation)
        loop = try EventLoop()
        writer = try DatabaseWriter(loop: loop, connection: db)
        listener = try TCPListener(loop: loop)
        revocationTimer = try LoopTimer(loop: loop)
        port = try listener.listen(on: configuration.listen) { [unowned self] stream in self.accept(stream) }
        revocationTimer.start(
            after: configuration.revocationCheckMilliseconds, repeat: configuration.revocationCheckMilliseconds
        ) { [unowned self] in self.closeRevokedSessions() }
        for signal in [SIGINT, SIGTERM] {
            signals.append(try SignalWatcher(loop: loop, signal: signal) { [unowned self] in self.shutdown() })
        }
        logger.info(
            "hub listening",
            metadata: [
                "address": "\(configuration.listen.host):\(port)", "key": "\(identity.publicKey)",
                "database": "\(configuration.databaseLocation)",
            ])
    }

    private func accept(_ stream: TCPStream) {
        let peer = stream.peerHost ?? "unknown"
        guard rateLimiter.allow(peer, now: loop.nowMilliseconds) else {
            // Log the first refusal of each second only, so a flood cannot flood the log.
            if loop.nowMilliseconds / 1000 != throttledLogged {
                throttledLogged = loop.nowMilliseconds / 1000
                logger.warning("handshake rate limit: connection refused", metadata: ["peer": "\(peer)"])
            }
            status.refused("rate-limited")
            stream.close()
            return
        }
        var sessionLogger = logger
        sessionLogger[metadataKey: "peer"] = "\(peer)"
        let session = StoreSession(
            stream: stream, loop: loop, writer: writer, ledger: ledger, identity: identity, guardian: guardian,
            handshakeTimeout: configuration.handshakeTimeoutMilliseconds, status: status, logger: sessionLogger)
        let id = ObjectIdentifier(session)
        sessions[id] = session
        session.onFinished = { [unowned self] in sessions[id] = nil }
        session.start()
    }

    /// Shuts down when the process that started the hub exits (used by test harnesses).
    public func stopWhenParentExits() throws {
        parentWatch = try watchParent(loop: loop) { [unowned self] in self.shutdown() }
    }

    /// Ends the live session of every store revoked since it connected.
    private func closeRevokedSessions() {
        guard sessions.values.contains(where: { $0.storeID != nil }) else { return }
        let ledger = self.ledger
        writer.submit({ db in Set(try ledger.stores(db).filter(\.revoked).map(\.id)) }) { [weak self] result in
            guard let self, case .success(let revoked) = result else { return }
            for session in self.sessions.values {
                if let store = session.storeID, revoked.contains(store) {
                    session.finish(reason: "store key revoked", orderly: true)
                }
            }
        }
    }

    public func run() {
        loop.run()
        loop.shutdown()
    }

    public func shutdown() {
        logger.info("hub stopping")
        listener.close()
        revocationTimer.close()
        for session in sessions.values { session.finish(reason: "hub shutting down", orderly: true) }
        writer.close()
        for signal in signals { signal.close() }
        parentWatch?.close()
        loop.stop()
    }
}

/// One store's session at the hub: the responder end of the channel, and the `HubSession`
/// state machine whose actions it executes against the ledger.
final class StoreSession {
    private let stream: TCPStream
    private let writer: DatabaseWriter
    private let ledger: HubLedger
    private let channel: SecureChannel
    private let loop: EventLoop
    private let timer: LoopTimer?
    private var logger: Logger
    private var session: HubSession?
    private var finished = false
    private let status: HubStatus
    /// The store's name once its key is verified, and whether it counts as connected.
    private var storeName = ""
    private var counted = false
    var onFinished: (() -> Void)?
    /// The store this session is authenticated as, once known.
    var storeID: NodeID? { session?.store }

    init(
        stream: TCPStream, loop: EventLoop, writer: DatabaseWriter, ledger: HubLedger, identity: SigningKeyPair,
        guardian: HandshakeGuard, handshakeTimeout: UInt64, status: HubStatus, logger: Logger
    ) {
        self.status = status
        self.stream = stream
        self.loop = loop
        self.writer = writer
        self.ledger = ledger
        self.logger = logger
        channel = SecureChannel.responder(identity: identity, guardian: guardian)
        timer = try? LoopTimer(loop: loop)
        // No slowloris: a peer that has not completed the handshake and hello in time is dropped.
        timer?.start(after: handshakeTimeout) { [weak self] in
            guard let self, self.session?.isReady != true else { return }
            self.status.refused("handshake-timeout")
            self.finish(reason: "handshake not completed in time", orderly: false)
        }
    }

    func start() {
        stream.onRead = { [unowned self] bytes in self.received(bytes) }
        stream.onEnd = { [unowned self] error in
            self.finish(
                reason: error.map { "connection failed: \($0)" } ?? "store disconnected without a close frame",
                orderly: false)
        }
        do { try stream.startReading() } catch { finish(reason: "\(error)", orderly: false) }
    }

    func finish(reason: String, orderly: Bool, level: Logger.Level = .info) {
        guard !finished else { return }
        finished = true
        if orderly, let final = channel.sealFinal(now: loop.nowMilliseconds) { stream.write(final) }
        logger.log(level: level, "session ended", metadata: ["reason": "\(reason)"])
        if let store = session?.store, !storeName.isEmpty {
            if level >= .warning { status.refused("session-failed", store: store, name: storeName) }
            if counted { status.disconnected(store, name: storeName) }
        }
        timer?.close()
        stream.closeAfterWrites()
        onFinished?()
    }

    private func received(_ bytes: [UInt8]) {
        handle(channel.receive(bytes, now: loop.nowMilliseconds))
    }

    private func handle(_ events: [ChannelEvent]) {
        for event in events {
            guard !finished else { return }
            switch event {
            case .send(let bytes): stream.write(bytes)
            case .verifyPeer(let key):
                let ledger = self.ledger
                writer.submit({ db in try ledger.store(db, key: key) }) { [weak self] result in
                    guard let self, !self.finished else { return }
                    if case .success(let store?) = result {
                        self.status.handshake(accepted: true)
                        self.storeName = store.name
                        self.session = HubSession(store: store.id)
                        self.logger[metadataKey: "store"] = "\(store.name)"
                        self.handle(self.channel.peerVerified(allowed: true, now: self.loop.nowMilliseconds))
                    } else {
                        self.logger.warning("refused store key", metadata: ["key": "\(key)"])
                        self.status.handshake(accepted: false)
                        self.status.refused("unknown-key")
                        self.handle(self.channel.peerVerified(allowed: false, now: self.loop.nowMilliseconds))
                    }
                }
            case .established:
                logger.debug("channel established")
            case .deliver(let plaintext):
                guard var session else { return }
                if counted { status.seen(session.store, name: storeName) }
                if let minor = SyncMessage.minorVersion(of: plaintext) { session.storeWireMinor = minor }
                do {
                    let actions = session.received(try SyncMessage(decoding: plaintext))
                    self.session = session
                    execute(actions)
                } catch {
                    execute(session.failed("undecodable message: \(error)"))
                }
            case .close(let reason):
                // Anything but the peer's own final frame is worth an operator's attention.
                finish(reason: reason.description, orderly: false, level: reason == .closedByPeer ? .info : .warning)
            }
        }
    }

    /// Runs a state-machine transition and executes what it asks for.
    private func step(_ transition: (inout HubSession) -> [HubSession.Action]) {
        guard !finished, var session else { return }
        let actions = transition(&session)
        self.session = session
        execute(actions)
    }

    private func execute(_ actions: [HubSession.Action]) {
        guard let store = session?.store else { return }
        let ledger = self.ledger
        for action in actions {
            guard !finished else { return }
            switch action {
            case .send(let message):
                guard let record = channel.seal(message.encoded, now: loop.nowMilliseconds) else { continue }
                stream.write(record)
            case .loadHighWater(let origin):
                writer.submit({ db in try ledger.originHighWater(db, origin: origin) }) { [weak self] result in
                    switch result {
                    case .success(let high): self?.step { $0.highWaterLoaded(high) }
                    case .failure(let error): self?.step { $0.failed("\(error)") }
                    }
                }
            case .merge(let entries):
                writer.submit({ db in try ledger.merge(db, from: store, entries: entries) }) { [weak self] result in
                    switch result {
                    case .success(let high):
                        if let self { self.status.merged(store, name: self.storeName, entries: entries) }
                        self?.step { $0.merged(upTo: high) }
                    case .failure(let error as MergeError): self?.step { $0.mergeRefused(error.description) }
                    case .failure(let error): self?.step { $0.failed("\(error)") }
                    }
                }
            case .loadFeed(let after, let limit, let excluding, let scopable):
                writer.submit({ db in
                    try ledger.feed(db, after: after, limit: limit, excluding: excluding, scopable: scopable)
                }) { [weak self] result in
                    switch result {
                    case .success(let feed):
                        self?.step {
                            $0.feedLoaded(feed.entries, upTo: feed.upTo, more: feed.more, snapshots: feed.snapshots)
                        }
                    case .failure(let error): self?.step { $0.failed("\(error)") }
                    }
                }
            case .lookupMember(let requestID, let card, let hashes):
                writer.submit({ db in try ledger.lookupMember(db, card: card, phoneHashes: hashes, for: store) }) {
                    [weak self] result in
                    switch result {
                    case .success(let snapshots):
                        self?.status.lookedUp(found: !snapshots.isEmpty)
                        self?.step { $0.memberLookedUp(requestID: requestID, snapshots: snapshots) }
                    case .failure(let error): self?.step { $0.failed("\(error)") }
                    }
                }
            case .grant(let requestID, let member, let account, let points):
                let grant: @Sendable (any SQLDatabase) throws -> (granted: UInt64, entry: LogEntry?) = { db in
                    try ledger.grant(db, member: member, account: account, to: store, points: points)
                }
                writer.submit(grant) { [weak self] result in
                    switch result {
                    case .success(let grant):
                        if let self, grant.granted > 0 {
                            self.status.granted(store, name: self.storeName, points: grant.granted)
                        }
                        self?.step { $0.granted(requestID: requestID, granted: grant.granted, entry: grant.entry) }
                    case .failure(let error): self?.step { $0.failed("\(error)") }
                    }
                }
            case .activatePromo(let requestID, let member, let code):
                let activate:
                    @Sendable (any SQLDatabase) throws -> (points: UInt64, entry: LogEntry?, refusal: String?) = {
                        db in try ledger.activatePromo(db, code: code, member: member, store: store)
                    }
                writer.submit(activate) { [weak self] result in
                    switch result {
                    case .success(let outcome):
                        self?.step {
                            $0.promoResolved(
                                requestID: requestID, points: outcome.points, entry: outcome.entry,
                                refusal: outcome.refusal)
                        }
                    case .failure(let error): self?.step { $0.failed("\(error)") }
                    }
                }
            case .loadRules(let newerThan):
                writer.submit({ db in try ledger.latestRules(db, newerThan: newerThan) }) { [weak self] result in
                    switch result {
                    case .success(let rules):
                        self?.step { $0.rulesLoaded(version: rules?.version ?? 0, document: rules?.document) }
                    case .failure(let error): self?.step { $0.failed("\(error)") }
                    }
                }
            case .storeOnline(let high):
                timer?.stop()
                if !counted {
                    counted = true
                    status.connected(store, name: storeName)
                }
                logger.info("store online", metadata: ["hubHasUpTo": "\(high)"])
            case .recordTelemetry(let counters):
                status.telemetry(store, name: storeName, counters)
            case .close(let reason):
                logger.error("closing the session", metadata: ["reason": "\(reason)"])
                finish(reason: reason, orderly: true)
            }
        }
    }
}

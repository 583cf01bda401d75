import Logging
import NodeKit
import SyncProtocol

/// The store's connection to the hub: connects over TCP, runs the secure channel, pushes
/// this store's log, pulls the hub's feed and asks for redemption rights. Reconnects with
/// backoff; everything it does runs on the loop thread, storage through the writer.
final class Uplink {
    struct Settings {
        var hub: SocketAddress
        var hubKey: PublicKey
        var syncIntervalMilliseconds: UInt64 = 1_000
        var handshakeTimeoutMilliseconds: UInt64 = 5_000
        var rightsTimeoutMilliseconds: UInt64 = 3_000
        var batchSize = 256
    }

    private let loop: EventLoop
    private let writer: DatabaseWriter
    private let ledger: EdgeLedger
    private let identity: SigningKeyPair
    private let settings: Settings
    private var logger: Logger

    private var stream: TCPStream?
    private var channel: SecureChannel?
    private let syncTimer: LoopTimer
    private let retryTimer: LoopTimer
    private var retryDelay: UInt64 = 250
    private var stopped = false

    /// Session state, valid while `online`.
    private(set) var online = false
    private var hubHigh: UInt64 = 0
    private var pushInFlight = false
    private var pullInFlight = false
    private(set) var feedWatermark: UInt64 = 0
    private var pendingRights: [UInt32: (timer: LoopTimer, completion: (Result<[SlotWrite], PosError>) -> Void)] = [:]
    private var nextRequestID: UInt32 = 1

    /// When the session last exchanged data with the hub (loop milliseconds), and when it went down.
    private(set) var lastContact: UInt64?
    private(set) var offlineSince: UInt64?

    init(
        loop: EventLoop, writer: DatabaseWriter, ledger: EdgeLedger, identity: SigningKeyPair, settings: Settings,
        logger: Logger
    )
        throws
    {
        self.loop = loop
        self.writer = writer
        self.ledger = ledger
        self.identity = identity
        self.settings = settings
        self.logger = logger
        syncTimer = try LoopTimer(loop: loop)
        retryTimer = try LoopTimer(loop: loop)
        offlineSince = loop.nowMilliseconds
    }

    func start(feedWatermark: UInt64) {
        self.feedWatermark = feedWatermark
        syncTimer.start(after: settings.syncIntervalMilliseconds, repeat: settings.syncIntervalMilliseconds) {
            [unowned self] in self.tick()
        }
        connect()
    }

    func stop() {
        stopped = true
        if let channel, let stream, let final = channel.sealFinal() {
            stream.write(final)
            stream.closeAfterWrites()
            self.stream = nil
        }
        teardown(reason: "store shutting down", retry: false)
        syncTimer.close()
        retryTimer.close()
    }

    // MARK: Connection

    private func connect() {
        guard !stopped, stream == nil else { return }
        do {
            let stream = try TCPStream(loop: loop)
            self.stream = stream
            try stream.connect(to: settings.hub) { [unowned self, weak stream] error in
                guard let stream, stream === self.stream else { return }
                if let error {
                    self.teardown(reason: "cannot reach hub at \(self.settings.hub): \(error)", retry: true)
                    return
                }
                self.connected(stream)
            }
        } catch {
            teardown(reason: "cannot connect to hub: \(error)", retry: true)
        }
    }

    private func connected(_ stream: TCPStream) {
        let (channel, hello) = SecureChannel.initiator(identity: identity, pinnedPeer: settings.hubKey)
        self.channel = channel
        stream.onRead = { [unowned self] bytes in self.received(bytes) }
        stream.onEnd = { [unowned self] error in
            self.stream = nil
            self.teardown(
                reason: error.map { "connection to hub failed: \($0)" } ?? "hub closed the connection", retry: true)
        }
        do { try stream.startReading() } catch {
            teardown(reason: "\(error)", retry: true)
            return
        }
        stream.write(hello)
        // No slowloris on our side either: a hub that does not finish the handshake is dropped.
        retryTimer.start(after: settings.handshakeTimeoutMilliseconds) { [unowned self] in
            if !self.online { self.teardown(reason: "hub did not complete the handshake in time", retry: true) }
        }
    }

    private func teardown(reason: String, retry: Bool) {
        let wasOnline = online
        online = false
        pushInFlight = false
        pullInFlight = false
        channel = nil
        if let stream {
            self.stream = nil
            stream.onEnd = nil
            stream.close()
        }
        for (_, pending) in pendingRights {
            pending.timer.close()
            pending.completion(.failure(.hubUnreachable("redeeming points held elsewhere")))
        }
        pendingRights.removeAll()
        if wasOnline {
            offlineSince = loop.nowMilliseconds
            logger.warning("uplink down", metadata: ["reason": "\(reason)"])
        } else {
            logger.debug("uplink attempt failed", metadata: ["reason": "\(reason)"])
        }
        guard retry, !stopped else { return }
        retryTimer.stop()
        retryTimer.start(after: retryDelay) { [unowned self] in self.connect() }
        retryDelay = min(retryDelay * 2, 5_000)
    }

    private func received(_ bytes: [UInt8]) {
        guard let channel else { return }
        for event in channel.receive(bytes) {
            switch event {
            case .send(let out): stream?.write(out)
            case .established(let peer):
                logger.debug("channel established", metadata: ["hub": "\(peer)"])
                send(.hello(version: syncProtocolVersion, node: ledger.node, feedWatermark: feedWatermark))
            case .deliver(let plaintext):
                do { try handle(try SyncMessage(decoding: plaintext)) } catch {
                    logger.error("bad message from hub", metadata: ["error": "\(error)"])
                    teardown(reason: "bad message from hub: \(error)", retry: true)
                    return
                }
            case .close(let reason):
                teardown(reason: reason.description, retry: true)
                return
            case .verifyPeer:
                break  // only a responder verifies peers
            }
        }
    }

    private func send(_ message: SyncMessage) {
        guard let channel, let record = channel.seal(message.encoded) else { return }
        stream?.write(record)
    }

    // MARK: Session

    private func handle(_ message: SyncMessage) throws {
        lastContact = loop.nowMilliseconds
        switch message {
        case .welcome(let version, let high):
            guard version == syncProtocolVersion else {
                teardown(reason: "hub speaks protocol version \(version)", retry: true)
                return
            }
            retryTimer.stop()
            online = true
            offlineSince = nil
            retryDelay = 250
            hubHigh = high
            logger.info("uplink online", metadata: ["hub": "\(settings.hub)", "hubHasUpTo": "\(high)"])
            push()
            pull()
        case .ack(let upTo):
            hubHigh = max(hubHigh, upTo)
            let ledger = self.ledger
            writer.submit({ db in try ledger.acknowledge(db, upTo: upTo) }) { [unowned self] result in
                self.pushInFlight = false
                if case .failure(let error) = result {
                    self.logger.error("cannot record ack", metadata: ["error": "\(error)"])
                }
                self.push()
            }
        case .changes(let entries, let upTo, let more):
            let ledger = self.ledger
            writer.submit({ db in try ledger.applyFeed(db, entries, upTo: upTo) }) { [unowned self] result in
                self.pullInFlight = false
                switch result {
                case .success:
                    self.feedWatermark = max(self.feedWatermark, upTo)
                    if more { self.pull() }
                case .failure(let error):
                    self.logger.error("refused changes from hub", metadata: ["error": "\(error)"])
                    self.teardown(reason: "refused changes from hub: \(error)", retry: true)
                }
            }
        case .rightsGrant(let requestID, _, let entry):
            guard let pending = pendingRights.removeValue(forKey: requestID) else { return }
            pending.timer.close()
            if let entry {
                try entry.validateOrigin()
                guard entry.origin == .hub else {
                    throw EntryError.wrongOrigin(claimed: entry.origin, authenticated: .hub)
                }
            }
            pending.completion(.success(entry?.effects ?? []))
        case .error(let code, let text):
            logger.error("hub reported an error", metadata: ["code": "\(code)", "message": "\(text)"])
            teardown(reason: "hub error: \(text)", retry: true)
        case .hello, .push, .pull, .rightsRequest:
            throw WireError.unknownTag(field: "message for a store", value: 0)
        }
    }

    private func tick() {
        guard online else { return }
        push()
        pull()
    }

    /// Something new was written locally: push it now rather than at the next tick.
    func kick() {
        guard online else { return }
        push()
    }

    private func push() {
        guard online, !pushInFlight else { return }
        pushInFlight = true
        let ledger = self.ledger
        let after = hubHigh
        let limit = settings.batchSize
        writer.submit({ db in try ledger.preparePush(db, after: after, limit: limit) }) { [unowned self] result in
            guard self.online else { return }
            switch result {
            case .success(let entries) where entries.isEmpty:
                self.pushInFlight = false
            case .success(let entries):
                self.send(.push(entries))
            case .failure(let error):
                self.pushInFlight = false
                self.logger.error("cannot read log for push", metadata: ["error": "\(error)"])
            }
        }
    }

    private func pull() {
        guard online, !pullInFlight else { return }
        pullInFlight = true
        send(.pull(after: feedWatermark, limit: UInt32(settings.batchSize)))
    }

    /// Asks the hub for `points` rights; completes with the grant's slot writes (empty when
    /// the hub had none) or an error when the hub is unreachable or silent.
    func requestRights(
        member: MemberID, account: Account, points: UInt64,
        _ completion: @escaping (Result<[SlotWrite], PosError>) -> Void
    ) {
        guard online else {
            completion(.failure(.hubUnreachable("redeeming points held elsewhere")))
            return
        }
        let id = nextRequestID
        nextRequestID &+= 1
        guard let timer = try? LoopTimer(loop: loop) else {
            completion(.failure(.storage("out of timer handles")))
            return
        }
        pendingRights[id] = (timer, completion)
        timer.start(after: settings.rightsTimeoutMilliseconds) { [unowned self] in
            guard let pending = self.pendingRights.removeValue(forKey: id) else { return }
            pending.timer.close()
            pending.completion(.failure(.hubUnreachable("redeeming points held elsewhere (no answer in time)")))
        }
        send(.rightsRequest(requestID: id, member: member, account: account, points: points))
    }
}

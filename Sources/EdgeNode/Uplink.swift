import Logging
import NodeKit
import SyncProtocol

/// The store's connection to the hub: TCP, the secure channel, and the `EdgeSession`
/// state machine, whose actions it executes (storage through the writer thread). Reconnects
/// with backoff. Everything here runs on the loop thread.
final class Uplink {
    struct Settings {
        var hub: SocketAddress
        var hubKey: PublicKey
        var syncIntervalMilliseconds: UInt64 = 1_000
        var handshakeTimeoutMilliseconds: UInt64 = 5_000
        var rightsTimeoutMilliseconds: UInt64 = 3_000
        var batchSize = 256
        var maxBackoffMilliseconds: UInt64 = 5_000
    }

    /// Where the session resumes: the hub's high-water mark of our log and our feed watermark.
    var resumePosition: (hubHasUpTo: UInt64, feedWatermark: UInt64) {
        (session.hubHighWater, session.feedWatermark)
    }

    private let loop: EventLoop
    private let writer: DatabaseWriter
    private let ledger: EdgeLedger
    private let identity: SigningKeyPair
    private let settings: Settings
    private let logger: Logger

    private var stream: TCPStream?
    private var channel: SecureChannel?
    private var session: EdgeSession
    private let syncTimer: LoopTimer
    private let retryTimer: LoopTimer
    private var retryDelay: UInt64 = 250
    private var stopped = false
    private var rightsCompletions: [UInt32: (Result<[SlotWrite], PosError>) -> Void] = [:]
    private var promoCompletions: [UInt32: (Result<(points: UInt64, writes: [SlotWrite]), PosError>) -> Void] = [:]
    private var lookupCompletions: [UInt32: (Result<[MemberSnapshot], PosError>) -> Void] = [:]

    /// When the session last heard from the hub, and since when it is down (loop milliseconds).
    private(set) var lastContact: UInt64?
    private(set) var offlineSince: UInt64?
    /// When the current outage began, on the wall clock (it bounds the offline policy).
    private(set) var outageStartedWall: UInt64 = wallClockMilliseconds()
    /// Reconnection attempts since the link went down.
    private(set) var reconnectAttempts: UInt64 = 0
    /// Redemptions refused for lack of points or rights (reported to the hub).
    var redemptionsRefused: UInt64 = 0
    /// Offline time of outages that have ended, and when this process started (loop ms).
    private var offlineEnded: UInt64 = 0
    private let startedAt: UInt64
    private var ticksSinceTelemetry = 0
    /// Sync ticks between two reports of the store's counters to the hub.
    static let telemetryEveryTicks = 10

    /// Time without a hub session since the process started.
    var offlineMilliseconds: UInt64 {
        offlineEnded + (offlineSince.map { loop.nowMilliseconds - min($0, loop.nowMilliseconds) } ?? 0)
    }

    /// Online, or offline since when: what the ledger needs to apply the offline policy.
    var connectivity: Connectivity {
        online
            ? .online(now: wallClockMilliseconds())
            : .offline(since: outageStartedWall, now: wallClockMilliseconds())
    }

    var online: Bool { session.isOnline }

    init(
        loop: EventLoop, writer: DatabaseWriter, ledger: EdgeLedger, identity: SigningKeyPair, settings: Settings,
        feedWatermark: UInt64, logger: Logger
    ) throws {
        self.loop = loop
        self.writer = writer
        self.ledger = ledger
        self.identity = identity
        self.settings = settings
        self.logger = logger
        session = EdgeSession(
            configuration: .init(
                node: ledger.node, batchSize: settings.batchSize,
                retryAfterMilliseconds: max(5 * settings.syncIntervalMilliseconds, 2_000),
                rightsTimeoutMilliseconds: settings.rightsTimeoutMilliseconds),
            feedWatermark: feedWatermark, rulesVersion: ledger.active.version)
        syncTimer = try LoopTimer(loop: loop)
        retryTimer = try LoopTimer(loop: loop)
        offlineSince = loop.nowMilliseconds
        startedAt = loop.nowMilliseconds
    }

    func start() {
        syncTimer.start(after: settings.syncIntervalMilliseconds, repeat: settings.syncIntervalMilliseconds) {
            [unowned self] in
            self.execute(
                self.session.tick(now: self.loop.nowMilliseconds, timedReleases: self.ledger.releasesWithTime))
            self.ticksSinceTelemetry += 1
            if self.ticksSinceTelemetry >= Self.telemetryEveryTicks { self.reportTelemetry() }
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

    /// Sends the store's counters to the hub (when online and the hub reads them).
    private func reportTelemetry() {
        ticksSinceTelemetry = 0
        guard online, session.hubWireMinor >= 1 else { return }
        let ledger = self.ledger
        writer.submit({ db in try ledger.telemetryFigures(db) }) { [weak self] result in
            guard let self, case .success(let figures) = result else { return }
            let counters = EdgeTelemetry(
                unsyncedOperations: figures.unsynced,
                writerQueueDepth: UInt64(self.writer.inFlight), offlineMilliseconds: self.offlineMilliseconds,
                redemptionsRefused: self.redemptionsRefused, uncoveredPoints: figures.uncoveredPoints,
                uptimeMilliseconds: self.loop.nowMilliseconds - self.startedAt)
            self.execute(self.session.report(counters))
        }
    }

    /// Something new was written locally: push it now rather than at the next tick.
    func kick() { execute(session.localChange()) }

    /// Asks the hub for `points` rights; completes with the grant's slot writes (empty when
    /// the hub had none) or an error when the hub is unreachable or silent.
    func requestRights(
        member: MemberID, account: Account, points: UInt64,
        _ completion: @escaping (Result<[SlotWrite], PosError>) -> Void
    ) {
        let (id, actions) = session.requestRights(
            member: member, account: account, points: points, now: loop.nowMilliseconds)
        rightsCompletions[id] = completion
        execute(actions)
    }

    /// Asks the hub to credit a promo code (single-use across the coalition).
    func requestPromo(
        member: MemberID, code: String,
        _ completion: @escaping (Result<(points: UInt64, writes: [SlotWrite]), PosError>) -> Void
    ) {
        let (id, actions) = session.requestPromo(member: member, code: code, now: loop.nowMilliseconds)
        promoCompletions[id] = completion
        execute(actions)
    }

    /// Whether the hub can be asked for a member this replica does not hold.
    var canLookUpMembers: Bool { online && session.hubWireMinor >= 3 }

    /// Asks the hub for a member by card or phone (keyed hashes); completes with what the
    /// hub holds (empty: nobody), or an error when the hub is unreachable or silent.
    func lookupMember(
        card: String, phoneHashes: [[UInt8]], _ completion: @escaping (Result<[MemberSnapshot], PosError>) -> Void
    ) {
        let (id, actions) = session.requestMember(card: card, phoneHashes: phoneHashes, now: loop.nowMilliseconds)
        lookupCompletions[id] = completion
        execute(actions)
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
        let (channel, hello) = SecureChannel.initiator(
            identity: identity, pinnedPeer: settings.hubKey, now: wallClockMilliseconds())
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
        // A hub that does not finish the handshake and welcome in time is dropped.
        retryTimer.start(after: settings.handshakeTimeoutMilliseconds) { [unowned self] in
            if !self.online { self.teardown(reason: "hub did not complete the handshake in time", retry: true) }
        }
    }

    private func teardown(reason: String, retry: Bool) {
        let wasOnline = online
        channel = nil
        if let stream {
            self.stream = nil
            stream.onEnd = nil
            stream.close()
        }
        execute(session.disconnected())
        if wasOnline {
            offlineSince = loop.nowMilliseconds
            outageStartedWall = wallClockMilliseconds()
            logger.warning("uplink down", metadata: ["reason": "\(reason)"])
        } else {
            logger.debug("uplink attempt failed", metadata: ["reason": "\(reason)"])
        }
        guard retry, !stopped else { return }
        // Jittered exponential backoff: a fleet of stores does not reconnect in lockstep
        // when the hub comes back.
        reconnectAttempts += 1
        let jittered = retryDelay / 2 + UInt64.random(in: 0...(retryDelay / 2))
        retryTimer.stop()
        retryTimer.start(after: jittered) { [unowned self] in self.connect() }
        retryDelay = min(retryDelay * 2, settings.maxBackoffMilliseconds)
    }

    private func received(_ bytes: [UInt8]) {
        guard let channel else { return }
        for event in channel.receive(bytes, now: loop.nowMilliseconds) {
            switch event {
            case .send(let out): stream?.write(out)
            case .established(let peer):
                logger.debug("channel established", metadata: ["hub": "\(peer)"])
                execute(session.connected(now: loop.nowMilliseconds))
            case .deliver(let plaintext):
                lastContact = loop.nowMilliseconds
                if let minor = SyncMessage.minorVersion(of: plaintext) { session.hubWireMinor = minor }
                do {
                    execute(session.received(try SyncMessage(decoding: plaintext), now: loop.nowMilliseconds))
                } catch {
                    logger.error("undecodable message from hub", metadata: ["error": "\(error)"])
                    teardown(reason: "undecodable message from hub: \(error)", retry: true)
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

    // MARK: Session actions

    private func execute(_ actions: [EdgeSession.Action]) {
        for action in actions {
            switch action {
            case .send(let message):
                guard let channel, let record = channel.seal(message.encoded, now: loop.nowMilliseconds) else {
                    continue
                }
                stream?.write(record)
            case .loadPush(let after, let limit):
                let ledger = self.ledger
                writer.submit({ db in try ledger.preparePush(db, after: after, limit: limit) }) {
                    [unowned self] result in
                    switch result {
                    case .success(let entries):
                        self.execute(self.session.entriesLoaded(entries, now: self.loop.nowMilliseconds))
                    case .failure(let error):
                        self.logger.error("cannot read the log for the hub", metadata: ["error": "\(error)"])
                        self.session.entriesLoadFailed()
                    }
                }
            case .recordAck(let upTo):
                let ledger = self.ledger
                writer.submit({ db in try ledger.acknowledge(db, upTo: upTo) }) { [logger] result in
                    if case .failure(let error) = result {
                        logger.error("cannot record the hub's ack", metadata: ["error": "\(error)"])
                    }
                }
            case .applyChanges(let entries, let upTo, let more, let snapshots):
                let ledger = self.ledger
                writer.submit({ db in try ledger.applyFeed(db, entries, upTo: upTo, snapshots: snapshots) }) {
                    [unowned self] result in
                    let now = self.loop.nowMilliseconds
                    switch result {
                    case .success(let clockErrors):
                        for error in clockErrors {
                            self.logger.warning("remote clock refused", metadata: ["error": "\(error)"])
                        }
                        self.execute(self.session.changesApplied(upTo: upTo, more: more, now: now))
                    case .failure(let error):
                        self.logger.error("refused changes from the hub", metadata: ["error": "\(error)"])
                        self.execute(self.session.changesRefused("\(error)"))
                    }
                }
            case .rightsGranted(let id, let writes):
                rightsCompletions.removeValue(forKey: id)?(.success(writes))
            case .rightsFailed(let id, let reason):
                rightsCompletions.removeValue(forKey: id)?(
                    .failure(.hubUnreachable("redeeming points held elsewhere (\(reason))")))
                promoCompletions.removeValue(forKey: id)?(
                    .failure(.hubUnreachable("activating a promo code (\(reason))")))
                lookupCompletions.removeValue(forKey: id)?(
                    .failure(.hubUnreachable("looking up a member this store does not hold (\(reason))")))
            case .memberFound(let id, let snapshots):
                lookupCompletions.removeValue(forKey: id)?(.success(snapshots))
            case .promoResolved(let id, let points, let writes, let refusal):
                if let refusal {
                    promoCompletions.removeValue(forKey: id)?(.failure(.promoRefused(refusal)))
                } else {
                    promoCompletions.removeValue(forKey: id)?(.success((points, writes)))
                }
            case .wentOnline(let high):
                retryTimer.stop()
                retryDelay = 250
                reconnectAttempts = 0
                if let since = offlineSince { offlineEnded += loop.nowMilliseconds - min(since, loop.nowMilliseconds) }
                offlineSince = nil
                reportTelemetry()
                logger.info("uplink online", metadata: ["hub": "\(settings.hub)", "hubHasUpTo": "\(high)"])
            case .applyRules(let version, let document):
                let ledger = self.ledger
                let hubKey = settings.hubKey
                writer.submit({ db in try ledger.storeRules(db, signed: document, hubKey: hubKey) }) {
                    [unowned self] result in
                    switch result {
                    case .success(let rules):
                        ledger.active.install(rules)
                        self.session.rulesApplied(version: rules.version)
                        self.logger.info("rules applied", metadata: ["version": "\(rules.version)"])
                    case .failure(let error):
                        self.logger.error("rules refused", metadata: ["version": "\(version)", "error": "\(error)"])
                    }
                }
            case .close(let reason):
                logger.warning("ending the session with the hub", metadata: ["reason": "\(reason)"])
                teardown(reason: reason, retry: true)
            }
        }
    }
}

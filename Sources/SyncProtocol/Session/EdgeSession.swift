/// The store's end of an edge–hub sync session, as a sans-IO state machine. The driver
/// (the libuv uplink, or the simulator) feeds it events (connected, a message arrived, a
/// storage job finished, a timer fired) and executes the actions it returns. Time is an
/// input (`now`, in milliseconds), so the simulator can drive it deterministically.
///
/// Invariants: at most one push and one pull are in flight; the hub's high-water mark and
/// the feed watermark only move forward; everything is resent after a timeout, so a lost,
/// duplicated or reordered message only delays the session, never corrupts it.
public struct EdgeSession: Sendable {
    public struct Configuration: Sendable {
        public var node: NodeID
        public var batchSize: Int
        /// A push or pull with no answer after this long is sent again.
        public var retryAfterMilliseconds: UInt64
        /// A rights request with no answer after this long fails.
        public var rightsTimeoutMilliseconds: UInt64

        public init(
            node: NodeID, batchSize: Int = 256, retryAfterMilliseconds: UInt64 = 5_000,
            rightsTimeoutMilliseconds: UInt64 = 3_000
        ) {
            self.node = node
            self.batchSize = min(batchSize, SyncMessage.maxBatch)
            self.retryAfterMilliseconds = retryAfterMilliseconds
            self.rightsTimeoutMilliseconds = rightsTimeoutMilliseconds
        }
    }

    public enum Action: Equatable, Sendable {
        case send(SyncMessage)
        /// Read this store's own log after `after` (at most `limit`), then call `entriesLoaded`.
        case loadPush(after: UInt64, limit: Int)
        /// Persist that the hub holds the log up to here.
        case recordAck(upTo: UInt64)
        /// Apply these feed entries durably, then call `changesApplied` or `changesRefused`.
        /// With `snapshots` (a partner-group feed) apply those first, and an origin's entries
        /// may skip numbers.
        case applyChanges([FeedEntry], upTo: UInt64, more: Bool, snapshots: [MemberSnapshot]?)
        /// The hub's answer to `requestMember`: apply these snapshots (none: the hub does not know the member).
        case memberFound(requestID: UInt32, snapshots: [MemberSnapshot])
        case rightsGranted(requestID: UInt32, writes: [SlotWrite])
        /// A promo code was credited (apply `writes`) or refused (`refusal`).
        case promoResolved(requestID: UInt32, points: UInt64, writes: [SlotWrite], refusal: String?)
        case rightsFailed(requestID: UInt32, reason: String)
        case wentOnline(hubHasUpTo: UInt64)
        /// Verify and install this rules document, then call `rulesApplied` (or ignore it if refused).
        case applyRules(version: UInt64, document: [UInt8])
        /// End the connection; the driver reconnects with backoff.
        case close(reason: String)
    }

    private enum Push: Equatable {
        case idle
        case loading
        case inFlight(upTo: UInt64, since: UInt64)
    }

    private enum Pull: Equatable {
        case idle
        case inFlight(since: UInt64)
        case applying
    }

    private enum State: Equatable {
        case disconnected
        case awaitingWelcome(since: UInt64)
        case online
    }

    public let configuration: Configuration
    private var state = State.disconnected
    private var push = Push.idle
    private var pull = Pull.idle
    /// The highest entry of this store's log the hub holds.
    public private(set) var hubHighWater: UInt64 = 0
    /// How far this store has read the hub's feed: everything up to here is applied, or
    /// brought nothing to apply. At or ahead of the watermark the store has stored.
    public private(set) var feedWatermark: UInt64
    /// A partner-group change was applied in this session, so the stored replica is marked
    /// partial (and empty changes need no write).
    private var partialRecorded = false
    private var pendingRights: [UInt32: UInt64] = [:]
    private var nextRequestID: UInt32 = 1
    /// Something may wait to be pushed that the last load did not see: a local change since
    /// that load was asked for, a load that came back full, or a push that went unanswered.
    /// An acknowledged push is followed by another load only then.
    private var pushDue = false
    /// A change from the hub was applied since the last load: it may have queued rights for
    /// release (a member who shopped elsewhere, a merge), which the next tick's load hands back.
    private var releaseDue = false

    /// The version of the rules document this store runs.
    public private(set) var rulesVersion: UInt64

    public init(configuration: Configuration, feedWatermark: UInt64, rulesVersion: UInt64 = 0) {
        self.configuration = configuration
        self.feedWatermark = feedWatermark
        self.rulesVersion = rulesVersion
    }

    public var isOnline: Bool { state == .online }

    /// The minor wire version of the hub's messages (the driver sets it from each frame).
    public var hubWireMinor: UInt8 = 0

    /// Reports the store's counters to the hub, when online and the hub reads them (wire 1.1).
    public func report(_ counters: EdgeTelemetry) -> [Action] {
        guard state == .online, hubWireMinor >= 1 else { return [] }
        return [.send(.telemetry(counters))]
    }

    // MARK: Connection

    /// The channel is established: greet the hub.
    public mutating func connected(now: UInt64 = 0) -> [Action] {
        state = .awaitingWelcome(since: now)
        push = .idle
        pull = .idle
        return [hello]
    }

    private var hello: Action {
        .send(
            .hello(
                version: syncProtocolVersion, node: configuration.node, feedWatermark: feedWatermark,
                rulesVersion: rulesVersion))
    }

    /// The connection is gone: everything in flight is forgotten, rights requests fail.
    public mutating func disconnected() -> [Action] {
        state = .disconnected
        push = .idle
        pull = .idle
        let failed = pendingRights.keys.sorted().map { Action.rightsFailed(requestID: $0, reason: "hub unreachable") }
        pendingRights.removeAll()
        return failed
    }

    private mutating func close(_ reason: String) -> [Action] {
        disconnected() + [.close(reason: reason)]
    }

    // MARK: Messages

    public mutating func received(_ message: SyncMessage, now: UInt64) -> [Action] {
        switch (state, message) {
        case (.awaitingWelcome, .welcome(let version, let high)):
            guard version == syncProtocolVersion else {
                return close("hub speaks protocol version \(version), this store speaks \(syncProtocolVersion)")
            }
            state = .online
            hubHighWater = high
            return [.wentOnline(hubHasUpTo: high), .recordAck(upTo: high)] + startPush() + startPull(now: now)
        case (.online, .welcome):
            return []  // a duplicate
        case (.online, .ack(let upTo)):
            var actions: [Action] = []
            if upTo > hubHighWater {
                hubHighWater = upTo
                actions.append(.recordAck(upTo: upTo))
            }
            if case .inFlight(let pushed, _) = push, upTo >= pushed {
                push = .idle
                if pushDue { actions += startPush() }
            }
            return actions
        case (.online, .changes(let entries, let upTo, let more, let snapshots)):
            guard pull != .applying else { return [] }  // an answer to an earlier pull; asked again later
            guard upTo > feedWatermark else {
                if case .inFlight = pull { pull = .idle }
                return []
            }
            // Nothing to write (a partner-group store's usual pull: the feed moved on with
            // other groups' entries only): the watermark moves in memory, with no write
            // transaction. The stored one catches up at the next change that brings
            // something; a restart from it pulls the stretch between again and finds the
            // same nothing. The first partner-group change of a session is applied anyway:
            // it marks the replica partial, which lets a later whole feed skip numbers.
            if entries.isEmpty, snapshots?.isEmpty ?? true, snapshots == nil || partialRecorded {
                feedWatermark = upTo
                pull = .idle
                return more ? startPull(now: now) : []
            }
            if snapshots != nil { partialRecorded = true }
            pull = .applying
            return [.applyChanges(entries, upTo: upTo, more: more, snapshots: snapshots)]
        case (.online, .memberFound(let requestID, let snapshots)):
            guard pendingRights.removeValue(forKey: requestID) != nil else { return [] }
            return [.memberFound(requestID: requestID, snapshots: snapshots)]
        case (.online, .promoResult(let requestID, let points, let entry, let refusal)):
            guard pendingRights.removeValue(forKey: requestID) != nil else { return [] }
            if let entry {
                guard entry.origin == .hub, (try? entry.validateOrigin()) != nil else {
                    return close("hub sent a promo credit that is not the hub's own entry")
                }
            }
            return [
                .promoResolved(requestID: requestID, points: points, writes: entry?.effects ?? [], refusal: refusal)
            ]
        case (.online, .rightsGrant(let requestID, _, let entry)):
            guard pendingRights.removeValue(forKey: requestID) != nil else { return [] }
            if let entry {
                guard entry.origin == .hub, (try? entry.validateOrigin()) != nil else {
                    return close("hub sent a rights grant that is not the hub's own entry")
                }
            }
            return [.rightsGranted(requestID: requestID, writes: entry?.effects ?? [])]
        case (.online, .rules(let version, let document)):
            // An older or repeated document is ignored: rules never go backwards.
            return version > rulesVersion ? [.applyRules(version: version, document: document)] : []
        case (_, .error(let code, let text)):
            return close("hub refused the session (\(code)): \(text)")
        case (.disconnected, _), (.awaitingWelcome, _):
            return []  // nothing but a welcome counts before the session is up
        default:
            return close("unexpected message from the hub")
        }
    }

    // MARK: Storage results

    public mutating func entriesLoaded(_ entries: [LogEntry], now: UInt64) -> [Action] {
        guard state == .online, push == .loading else { return [] }
        guard let last = entries.last else {
            push = .idle
            return pushDue ? startPush() : []
        }
        if entries.count >= configuration.batchSize { pushDue = true }
        push = .inFlight(upTo: last.sequence, since: now)
        return [.send(.push(entries))]
    }

    /// The driver could not read the log for a push (a storage error): the next tick tries again.
    public mutating func entriesLoadFailed() {
        guard push == .loading else { return }
        push = .idle
        pushDue = true
    }

    public mutating func changesApplied(upTo: UInt64, more: Bool, now: UInt64) -> [Action] {
        feedWatermark = max(feedWatermark, upTo)
        releaseDue = true
        guard state == .online, pull == .applying else { return [] }
        pull = .idle
        return more ? startPull(now: now) : []
    }

    /// The feed could not be applied (a gap, a forged entry): end the session.
    public mutating func changesRefused(_ reason: String) -> [Action] {
        close("refused changes from the hub: \(reason)")
    }

    /// The driver verified and installed a rules document.
    public mutating func rulesApplied(version: UInt64) {
        rulesVersion = max(rulesVersion, version)
    }

    // MARK: Local events

    /// Something new was written locally: push it now rather than at the next tick (or, with
    /// a push under way, once the hub acknowledged it).
    public mutating func localChange() -> [Action] {
        pushDue = true
        return state == .online ? startPush() : []
    }

    /// The periodic sync timer: push and pull, resend what went unanswered, expire rights requests.
    /// `timedReleases`: the store's rules hand rights back with time (rights placement, a
    /// return window), so every tick loads, for the release scan. Without them a tick loads
    /// only when something is due: a local change not yet pushed, an unanswered push, or a
    /// change from the hub applied since the last load.
    public mutating func tick(now: UInt64, timedReleases: Bool = true) -> [Action] {
        var actions: [Action] = []
        for (id, since) in pendingRights.sorted(by: { $0.key < $1.key })
        where now >= since + configuration.rightsTimeoutMilliseconds {
            pendingRights[id] = nil
            actions.append(.rightsFailed(requestID: id, reason: "no answer from the hub in time"))
        }
        if case .awaitingWelcome(let since) = state, now >= since + configuration.retryAfterMilliseconds {
            state = .awaitingWelcome(since: now)
            return actions + [hello]
        }
        guard state == .online else { return actions }
        if case .inFlight(_, let since) = push, now >= since + configuration.retryAfterMilliseconds {
            push = .idle
            pushDue = true
        }
        if case .inFlight(let since) = pull, now >= since + configuration.retryAfterMilliseconds { pull = .idle }
        let load = timedReleases || pushDue || releaseDue ? startPush() : []
        return actions + load + startPull(now: now)
    }

    /// Asks the hub for redemption rights; the answer comes as `rightsGranted` or `rightsFailed`.
    public mutating func requestRights(member: MemberID, account: Account, points: UInt64, now: UInt64) -> (
        requestID: UInt32, actions: [Action]
    ) {
        let id = nextRequestID
        nextRequestID &+= 1
        guard state == .online else { return (id, [.rightsFailed(requestID: id, reason: "hub unreachable")]) }
        pendingRights[id] = now
        return (id, [.send(.rightsRequest(requestID: id, member: member, account: account, points: points))])
    }

    /// Asks the hub to credit a promo code; the answer comes as `promoResolved` or `rightsFailed`.
    public mutating func requestPromo(member: MemberID, code: String, now: UInt64) -> (
        requestID: UInt32, actions: [Action]
    ) {
        let id = nextRequestID
        nextRequestID &+= 1
        guard state == .online else { return (id, [.rightsFailed(requestID: id, reason: "hub unreachable")]) }
        pendingRights[id] = now
        return (id, [.send(.promoRequest(requestID: id, member: member, code: code))])
    }

    /// Asks the hub for a member this replica does not hold (a card or the phone's keyed
    /// hashes); the answer comes as `memberFound` or `rightsFailed`.
    public mutating func requestMember(card: String, phoneHashes: [[UInt8]], now: UInt64) -> (
        requestID: UInt32, actions: [Action]
    ) {
        let id = nextRequestID
        nextRequestID &+= 1
        guard state == .online else { return (id, [.rightsFailed(requestID: id, reason: "hub unreachable")]) }
        guard hubWireMinor >= 3 else {
            return (id, [.rightsFailed(requestID: id, reason: "the hub is too old to look up members (wire 1.3)")])
        }
        pendingRights[id] = now
        return (id, [.send(.memberLookup(requestID: id, card: card, phoneHashes: phoneHashes))])
    }

    private mutating func startPush() -> [Action] {
        guard push == .idle else { return [] }
        push = .loading
        pushDue = false
        releaseDue = false
        return [.loadPush(after: hubHighWater, limit: configuration.batchSize)]
    }

    private mutating func startPull(now: UInt64) -> [Action] {
        guard pull == .idle else { return [] }
        pull = .inFlight(since: now)
        return [.send(.pull(after: feedWatermark, limit: UInt32(configuration.batchSize)))]
    }
}

import Testing

@testable import SyncProtocol

private let member = AccountKey(member: MemberID(origin: NodeID(1), serial: 1), account: .main)

/// A store with an in-memory log and replica, driving a real `EdgeSession`.
private final class EdgeModel {
    let node: NodeID
    var session: EdgeSession
    var log: [LogEntry] = []
    var acknowledged: UInt64 = 0
    var remoteHigh: [NodeID: UInt64] = [:]
    var replica = ReplicaState()
    var online = false
    var granted: [UInt32: [SlotWrite]] = [:]
    var failedRights: [UInt32] = []

    init(node: NodeID) {
        self.node = node
        session = EdgeSession(
            configuration: .init(
                node: node, batchSize: 3, retryAfterMilliseconds: 2_000, rightsTimeoutMilliseconds: 3_000),
            feedWatermark: 0)
    }

    func earn(_ points: UInt64) {
        let write = try! replica.earn(at: node, member, points)
        log.append(
            LogEntry(
                origin: node, sequence: UInt64(log.count + 1), timestamp: HLCTimestamp(rawValue: UInt64(log.count + 1)),
                idempotencyKey: "", operation: .rightsMove(member: member.member, account: .main, to: node, points: 0),
                effects: [write]))
    }
}

/// The hub with in-memory storage, driving one `HubSession` per connected store.
private final class HubModel {
    var logs: [NodeID: [LogEntry]] = [:]
    var feed: [FeedEntry] = []
    var replica = ReplicaState()
    var sessions: [NodeID: HubSession] = [:]

    func merge(_ entries: [LogEntry], from store: NodeID) -> Result<UInt64, EntryError> {
        for entry in entries {
            let high = UInt64(logs[store, default: []].count)
            if entry.sequence <= high { continue }
            guard entry.sequence == high + 1 else {
                return .failure(.gap(origin: store, expected: high + 1, got: entry.sequence))
            }
            logs[store, default: []].append(entry)
            feed.append(FeedEntry(feedSequence: UInt64(feed.count + 1), entry: entry))
            replica.apply(entry.effects)
        }
        return .success(UInt64(logs[store, default: []].count))
    }

    func grant(member key: AccountKey, to store: NodeID, points: UInt64) -> (UInt64, LogEntry?) {
        let held = replica.counter(key).rights(.hub)
        let granted = min(points, held > 0 ? UInt64(held) : 0)
        guard granted > 0, let write = try? replica.move(by: .hub, to: store, key, granted) else { return (0, nil) }
        let entry = LogEntry(
            origin: .hub, sequence: UInt64(logs[.hub, default: []].count + 1), timestamp: HLCTimestamp(rawValue: 1),
            idempotencyKey: "",
            operation: .rightsMove(member: key.member, account: key.account, to: store, points: granted),
            effects: [write])
        logs[.hub, default: []].append(entry)
        feed.append(FeedEntry(feedSequence: UInt64(feed.count + 1), entry: entry))
        return (granted, entry)
    }
}

/// Two stores and a hub joined by a pipe that can lose, duplicate and reorder messages.
private struct Network {
    var random: SplitMix
    var now: UInt64 = 1_000
    let edges = [EdgeModel(node: NodeID(1)), EdgeModel(node: NodeID(2))]
    let hub = HubModel()
    var pipe: [(toHub: Bool, edge: Int, message: SyncMessage)] = []
    var lossPercent: UInt64 = 10
    var duplicatePercent: UInt64 = 10

    init(seed: UInt64) { random = SplitMix(seed: seed) }

    mutating func connect(_ index: Int) {
        let edge = edges[index]
        hub.sessions[edge.node] = HubSession(store: edge.node)
        edge.online = true
        run(edge: index, edge.session.connected(now: now))
    }

    mutating func disconnect(_ index: Int) {
        let edge = edges[index]
        edge.online = false
        hub.sessions[edge.node] = nil
        pipe.removeAll { $0.edge == index }
        run(edge: index, edge.session.disconnected())
    }

    mutating func run(edge index: Int, _ actions: [EdgeSession.Action]) {
        let edge = edges[index]
        for action in actions {
            switch action {
            case .send(let message): pipe.append((true, index, message))
            case .loadPush(let after, let limit):
                let entries = Array(edge.log.filter { $0.sequence > after }.prefix(limit))
                run(edge: index, edge.session.entriesLoaded(entries, now: now))
            case .recordAck(let upTo): edge.acknowledged = max(edge.acknowledged, upTo)
            case .applyChanges(let entries, let upTo, let more, _):
                var refused: String?
                for feed in entries where feed.entry.origin != edge.node {
                    let high = edge.remoteHigh[feed.entry.origin, default: 0]
                    if feed.entry.sequence <= high { continue }
                    guard feed.entry.sequence == high + 1 else {
                        refused = "gap"
                        break
                    }
                    edge.remoteHigh[feed.entry.origin] = feed.entry.sequence
                    edge.replica.apply(feed.entry.effects)
                }
                if let refused {
                    run(edge: index, edge.session.changesRefused(refused))
                } else {
                    run(edge: index, edge.session.changesApplied(upTo: upTo, more: more, now: now))
                }
            case .rightsGranted(let id, let writes):
                edge.replica.apply(writes)
                edge.granted[id] = writes
            case .rightsFailed(let id, _): edge.failedRights.append(id)
            case .promoResolved, .memberFound: break
            case .wentOnline: break
            case .applyRules(let version, _): edge.session.rulesApplied(version: version)
            case .close: disconnect(index)
            }
        }
    }

    mutating func runHub(edge index: Int, _ actions: [HubSession.Action]) {
        let node = edges[index].node
        for action in actions {
            guard var session = hub.sessions[node] else { return }
            var next: [HubSession.Action] = []
            switch action {
            case .send(let message): pipe.append((false, index, message))
            case .loadHighWater(let origin): next = session.highWaterLoaded(UInt64(hub.logs[origin, default: []].count))
            case .merge(let entries):
                switch hub.merge(entries, from: node) {
                case .success(let high): next = session.merged(upTo: high)
                case .failure(let error): next = session.mergeRefused(error.description)
                }
            case .loadFeed(let after, let limit, let excluding, _):
                let scanned = Array(hub.feed.filter { $0.feedSequence > after }.prefix(limit))
                next = session.feedLoaded(
                    scanned.filter { $0.entry.origin != excluding }, upTo: scanned.last?.feedSequence ?? after,
                    more: scanned.count == limit)
            case .grant(let id, let member, let account, let points):
                let (granted, entry) = hub.grant(
                    member: AccountKey(member: member, account: account), to: node, points: points)
                next = session.granted(requestID: id, granted: granted, entry: entry)
            case .loadRules: next = session.rulesLoaded(version: 0, document: nil)
            case .activatePromo(let id, _, _):
                next = session.promoResolved(requestID: id, points: 0, entry: nil, refusal: "none")
            case .lookupMember(let id, _, _): next = session.memberLookedUp(requestID: id, snapshots: [])
            case .storeOnline, .recordTelemetry: break
            case .close:
                hub.sessions[node] = nil
                continue
            }
            hub.sessions[node] = session
            runHub(edge: index, next)
        }
    }

    /// Delivers one message from the pipe, maybe losing or duplicating it.
    mutating func deliverOne(faulty: Bool) {
        guard !pipe.isEmpty else { return }
        let index = faulty ? Int(random.next() % UInt64(pipe.count)) : 0
        let (toHub, edge, message) = pipe[index]
        if faulty && random.next() % 100 < duplicatePercent {
            // leave it in the pipe: it will be delivered again
        } else {
            pipe.remove(at: index)
        }
        if faulty && random.next() % 100 < lossPercent { return }
        if toHub {
            guard var session = hub.sessions[edges[edge].node] else { return }
            let actions = session.received(message)
            hub.sessions[edges[edge].node] = session
            runHub(edge: edge, actions)
        } else {
            guard edges[edge].online else { return }
            run(edge: edge, edges[edge].session.received(message, now: now))
        }
    }

    mutating func tick(_ index: Int) {
        now += 700
        run(edge: index, edges[index].session.tick(now: now))
    }

    var converged: Bool {
        edges.allSatisfy { edge in
            edge.acknowledged == UInt64(edge.log.count) && hub.logs[edge.node, default: []].count == edge.log.count
                && edge.replica == hub.replica
        }
    }
}

@Suite struct SessionTests {
    @Test(arguments: Array(UInt64(1)...UInt64(40)))
    func storesAndHubConvergeThroughALossyDuplicatingReorderingPipe(seed: UInt64) {
        var net = Network(seed: seed)
        net.connect(0)
        net.connect(1)
        for _ in 0..<600 {
            let roll = net.random.next() % 100
            let edge = Int(net.random.next() % 2)
            switch roll {
            case 0..<45: net.deliverOne(faulty: true)
            case 45..<65:
                net.edges[edge].earn(net.random.next() % 20 + 1)
                net.run(edge: edge, net.edges[edge].session.localChange())
            case 65..<90: net.tick(edge)
            case 90..<93: if net.edges[edge].online { net.disconnect(edge) }
            default: if !net.edges[edge].online { net.connect(edge) }
            }
        }
        // Liveness: the network heals; every replica must converge within a bound.
        for index in net.edges.indices where !net.edges[index].online { net.connect(index) }
        var rounds = 0
        while !net.converged && rounds < 500 {
            for index in net.edges.indices where !net.edges[index].online { net.connect(index) }
            while !net.pipe.isEmpty { net.deliverOne(faulty: false) }
            net.tick(rounds % 2)
            rounds += 1
        }
        #expect(net.converged, "seed \(seed) did not converge in 500 rounds")
        #expect(net.edges.allSatisfy { $0.session.isOnline })
    }

    @Test func theHubRefusesEntriesOfAnotherOriginAndEndsTheSession() {
        var session = HubSession(store: NodeID(1))
        _ = session.received(.hello(version: syncProtocolVersion, node: NodeID(1), feedWatermark: 0, rulesVersion: 0))
        _ = session.highWaterLoaded(0)
        let forged = LogEntry(
            origin: NodeID(2), sequence: 1, timestamp: HLCTimestamp(rawValue: 1), idempotencyKey: "",
            operation: .rightsMove(member: member.member, account: .main, to: .hub, points: 1), effects: [])
        let actions = session.received(.push([forged]))
        #expect(
            actions.last == .close(reason: "entry claims origin store-2 but the channel is authenticated as store-1"))
        #expect(session.received(.pull(after: 0, limit: 1)).isEmpty, "nothing more is served")
    }

    @Test func aHelloClaimingAnotherNodeIsRefused() {
        var session = HubSession(store: NodeID(1))
        let actions = session.received(
            .hello(version: syncProtocolVersion, node: NodeID(7), feedWatermark: 0, rulesVersion: 0))
        guard case .close? = actions.last else {
            Issue.record("expected a close, got \(actions)")
            return
        }
    }

    @Test func rightsRequestsFailOfflineAndAfterATimeout() {
        var session = EdgeSession(
            configuration: .init(node: NodeID(1), rightsTimeoutMilliseconds: 1_000), feedWatermark: 0)
        let offline = session.requestRights(member: member.member, account: .main, points: 5, now: 0)
        #expect(offline.actions == [.rightsFailed(requestID: offline.requestID, reason: "hub unreachable")])
        _ = session.connected()
        _ = session.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 0)
        let asked = session.requestRights(member: member.member, account: .main, points: 5, now: 100)
        #expect(session.tick(now: 500).allSatisfy { if case .rightsFailed = $0 { false } else { true } })
        #expect(
            session.tick(now: 1_200).contains(
                .rightsFailed(requestID: asked.requestID, reason: "no answer from the hub in time")))
        #expect(session.received(.rightsGrant(requestID: asked.requestID, granted: 5, entry: nil), now: 1_300).isEmpty)
    }

    @Test func aGrantThatIsNotTheHubsOwnEntryEndsTheSession() {
        var session = EdgeSession(configuration: .init(node: NodeID(1)), feedWatermark: 0)
        _ = session.connected()
        _ = session.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 0)
        let asked = session.requestRights(member: member.member, account: .main, points: 5, now: 0)
        let forged = LogEntry(
            origin: NodeID(2), sequence: 1, timestamp: HLCTimestamp(rawValue: 1), idempotencyKey: "",
            operation: .rightsMove(member: member.member, account: .main, to: NodeID(1), points: 5),
            effects: [SlotWrite(member: member.member, account: .main, slot: .moved(NodeID(2), NodeID(1)), value: 5)])
        let actions = session.received(.rightsGrant(requestID: asked.requestID, granted: 5, entry: forged), now: 1)
        guard case .close? = actions.last else {
            Issue.record("expected a close, got \(actions)")
            return
        }
    }

    /// After an acknowledged push the store loads its log again only when something may be
    /// left: a local change since the last load, or a load that came back full. The tick
    /// always loads.
    @Test func anAcknowledgedPushLoadsAgainOnlyWhenSomethingMayBeLeft() {
        func entry(_ sequence: UInt64) -> LogEntry {
            LogEntry(
                origin: NodeID(1), sequence: sequence, timestamp: HLCTimestamp(rawValue: sequence), idempotencyKey: "",
                operation: .rightsMove(member: member.member, account: .main, to: .hub, points: 1), effects: [])
        }
        func loads(_ actions: [EdgeSession.Action]) -> [UInt64] {
            actions.compactMap { if case .loadPush(let after, _) = $0 { after } else { nil } }
        }
        var session = EdgeSession(configuration: .init(node: NodeID(1), batchSize: 2), feedWatermark: 0)
        _ = session.connected()
        #expect(loads(session.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 0)) == [0])
        #expect(session.entriesLoaded([], now: 0).isEmpty, "nothing to push")

        // One entry, acknowledged, nothing since: no second load.
        #expect(loads(session.localChange()) == [0])
        #expect(session.entriesLoaded([entry(1)], now: 0) == [.send(.push([entry(1)]))])
        #expect(session.received(.ack(upTo: 1), now: 1) == [.recordAck(upTo: 1)])

        // A change while the push is under way: loaded again once it is acknowledged.
        #expect(loads(session.localChange()) == [1])
        _ = session.entriesLoaded([entry(2)], now: 2)
        #expect(session.localChange().isEmpty, "one push at a time")
        #expect(loads(session.received(.ack(upTo: 2), now: 3)) == [2])
        _ = session.entriesLoaded([entry(3)], now: 3)
        #expect(loads(session.received(.ack(upTo: 3), now: 4)).isEmpty)

        // A full batch: the rest is loaded after the acknowledgement without a new change.
        #expect(loads(session.localChange()) == [3])
        _ = session.entriesLoaded([entry(4), entry(5)], now: 5)
        #expect(loads(session.received(.ack(upTo: 5), now: 6)) == [5])
        _ = session.entriesLoaded([entry(6)], now: 6)
        #expect(loads(session.received(.ack(upTo: 6), now: 7)).isEmpty)

        // A change made while a load was being read that came back empty is loaded at once.
        #expect(loads(session.localChange()) == [6])
        #expect(session.localChange().isEmpty)
        #expect(loads(session.entriesLoaded([], now: 8)) == [6])
        #expect(session.entriesLoaded([], now: 8).isEmpty)

        // The tick loads whatever happened.
        #expect(loads(session.tick(now: 10)) == [6])
    }

    @Test func aNewerRulesDocumentIsOfferedAfterTheWelcomeAndNeverAnOlderOne() {
        var hub = HubSession(store: NodeID(1))
        var edge = EdgeSession(configuration: .init(node: NodeID(1)), feedWatermark: 0, rulesVersion: 3)
        guard case .send(let hello)? = edge.connected().first else {
            Issue.record("no hello")
            return
        }
        #expect(hub.received(hello) == [.loadHighWater(origin: NodeID(1)), .loadRules(newerThan: 3)])
        #expect(hub.rulesLoaded(version: 4, document: [1, 2]).isEmpty, "held until the welcome")
        let ready = hub.highWaterLoaded(0)
        #expect(ready.last == .send(.rules(version: 4, document: [1, 2])))
        _ = edge.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 0)
        #expect(
            edge.received(.rules(version: 4, document: [1, 2]), now: 0) == [.applyRules(version: 4, document: [1, 2])])
        edge.rulesApplied(version: 4)
        #expect(edge.received(.rules(version: 4, document: [1, 2]), now: 0).isEmpty)
        #expect(edge.received(.rules(version: 2, document: [9]), now: 0).isEmpty, "rules never go backwards")
    }
}

@Suite struct PromoSessionTests {
    @Test func aPromoRequestTravelsToTheHubAndItsResultBack() {
        var hub = HubSession(store: NodeID(1))
        _ = hub.received(.hello(version: syncProtocolVersion, node: NodeID(1), feedWatermark: 0, rulesVersion: 0))
        _ = hub.highWaterLoaded(0)
        var edge = EdgeSession(configuration: .init(node: NodeID(1)), feedWatermark: 0)
        let offline = edge.requestPromo(member: member.member, code: "ABC", now: 0)
        #expect(offline.actions == [.rightsFailed(requestID: offline.requestID, reason: "hub unreachable")])
        _ = edge.connected()
        _ = edge.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 0)
        let asked = edge.requestPromo(member: member.member, code: "ABC", now: 0)
        guard case .send(let request)? = asked.actions.first else {
            Issue.record("no request sent")
            return
        }
        #expect(
            hub.received(request) == [.activatePromo(requestID: asked.requestID, member: member.member, code: "ABC")])
        let refused = hub.promoResolved(requestID: asked.requestID, points: 0, entry: nil, refusal: "already used")
        guard case .send(let answer)? = refused.first else {
            Issue.record("no answer sent")
            return
        }
        #expect(
            edge.received(answer, now: 1)
                == [.promoResolved(requestID: asked.requestID, points: 0, writes: [], refusal: "already used")])
    }
}

@Suite struct MemberLookupSessionTests {
    static let snapshot = MemberSnapshot(
        record: MemberRecord(
            id: member.member, card: "4600000000015", phoneHash: [], referrer: nil,
            registeredAt: HLCTimestamp(rawValue: 1)),
        slots: [SlotWrite(member: member.member, account: .main, slot: .earned(NodeID(2)), value: 50)])

    func online(hubMinor: UInt8) -> EdgeSession {
        var edge = EdgeSession(
            configuration: .init(node: NodeID(1), rightsTimeoutMilliseconds: 1_000), feedWatermark: 0)
        _ = edge.connected()
        _ = edge.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 0)
        edge.hubWireMinor = hubMinor
        return edge
    }

    @Test func aLookupTravelsToTheHubAndTheMemberBack() {
        var hub = HubSession(store: NodeID(1))
        _ = hub.received(.hello(version: syncProtocolVersion, node: NodeID(1), feedWatermark: 0, rulesVersion: 0))
        _ = hub.highWaterLoaded(0)
        var edge = online(hubMinor: WireVersion.minor)
        let asked = edge.requestMember(card: "4600000000015", phoneHashes: [[1, 2]], now: 0)
        guard case .send(let request)? = asked.actions.first else {
            Issue.record("no lookup sent")
            return
        }
        #expect(
            hub.received(request)
                == [.lookupMember(requestID: asked.requestID, card: "4600000000015", phoneHashes: [[1, 2]])])
        guard case .send(let answer)? = hub.memberLookedUp(requestID: asked.requestID, snapshots: [Self.snapshot]).first
        else {
            Issue.record("no answer sent")
            return
        }
        #expect(edge.received(answer, now: 1) == [.memberFound(requestID: asked.requestID, snapshots: [Self.snapshot])])
        // A repeated answer, or one nobody asked for, is ignored.
        #expect(edge.received(answer, now: 2).isEmpty)
    }

    @Test func aLookupFailsOfflineWithAnOlderHubAndAfterATimeout() {
        var offline = EdgeSession(configuration: .init(node: NodeID(1)), feedWatermark: 0)
        let down = offline.requestMember(card: "4600000000015", phoneHashes: [], now: 0)
        #expect(down.actions == [.rightsFailed(requestID: down.requestID, reason: "hub unreachable")])
        var old = online(hubMinor: 2)
        let refused = old.requestMember(card: "4600000000015", phoneHashes: [], now: 0)
        guard case .rightsFailed? = refused.actions.first else {
            Issue.record("a 1.2 hub was asked to look up a member: \(refused.actions)")
            return
        }
        var edge = online(hubMinor: WireVersion.minor)
        let asked = edge.requestMember(card: "4600000000015", phoneHashes: [], now: 100)
        #expect(
            edge.tick(now: 1_200).contains(
                .rightsFailed(requestID: asked.requestID, reason: "no answer from the hub in time")))
        #expect(edge.received(.memberFound(requestID: asked.requestID, snapshots: []), now: 1_300).isEmpty)
    }

    @Test func onlyAStoreSpeakingOneThreeIsOfferedAPartnerGroupFeed() {
        for (minor, scopable) in [(UInt8(2), false), (WireVersion.minor, true)] {
            var hub = HubSession(store: NodeID(1))
            hub.storeWireMinor = minor
            _ = hub.received(.hello(version: syncProtocolVersion, node: NodeID(1), feedWatermark: 0, rulesVersion: 0))
            _ = hub.highWaterLoaded(0)
            #expect(
                hub.received(.pull(after: 3, limit: 100))
                    == [.loadFeed(after: 3, limit: 100, excluding: NodeID(1), scopable: scopable)])
        }
        // A lookup before the hello is not served.
        var early = HubSession(store: NodeID(1))
        #expect(early.received(.memberLookup(requestID: 1, card: "4600000000015", phoneHashes: [])).isEmpty)
    }

    @Test func aChangeThatBringsNothingMovesTheWatermarkWithoutAWrite() {
        var edge = online(hubMinor: WireVersion.minor)
        _ = edge.tick(now: 10)
        // The session's first partner-group change is applied even when empty: the driver
        // marks the replica partial with it.
        #expect(
            edge.received(.changes(entries: [], upTo: 5, more: false, snapshots: []), now: 11)
                == [.applyChanges([], upTo: 5, more: false, snapshots: [])])
        _ = edge.changesApplied(upTo: 5, more: false, now: 12)
        #expect(edge.tick(now: 20).contains(.send(.pull(after: 5, limit: 256))))
        // Then an empty one moves the watermark in memory only, and the next pull goes on from it.
        #expect(edge.received(.changes(entries: [], upTo: 9, more: false, snapshots: []), now: 21).isEmpty)
        #expect(edge.feedWatermark == 9)
        #expect(edge.tick(now: 30).contains(.send(.pull(after: 9, limit: 256))))
        // With more to come, the next pull goes out at once.
        #expect(
            edge.received(.changes(entries: [], upTo: 12, more: true, snapshots: []), now: 31)
                == [.send(.pull(after: 12, limit: 256))])
        // Snapshots or entries are applied as before.
        let joined = edge.received(.changes(entries: [], upTo: 14, more: false, snapshots: [Self.snapshot]), now: 32)
        #expect(joined == [.applyChanges([], upTo: 14, more: false, snapshots: [Self.snapshot])])
        #expect(edge.feedWatermark == 12)
        // A whole feed's empty change needs no first write.
        var whole = online(hubMinor: WireVersion.minor)
        _ = whole.tick(now: 10)
        #expect(whole.received(.changes(entries: [], upTo: 7, more: false, snapshots: nil), now: 11).isEmpty)
        #expect(whole.feedWatermark == 7)
        // A session resuming from the stored watermark applies its first partner-group change again.
        var resumed = EdgeSession(configuration: .init(node: NodeID(1)), feedWatermark: 5)
        _ = resumed.connected()
        _ = resumed.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 0)
        #expect(
            resumed.received(.changes(entries: [], upTo: 14, more: false, snapshots: []), now: 1)
                == [.applyChanges([], upTo: 14, more: false, snapshots: [])])
    }

    @Test func aTickLoadsOnlyWhenSomethingIsDue() {
        func loads(_ actions: [EdgeSession.Action]) -> Bool {
            actions.contains { if case .loadPush = $0 { true } else { false } }
        }
        var edge = online(hubMinor: WireVersion.minor)
        _ = edge.entriesLoaded([], now: 1)  // the load the welcome started
        // Nothing new: no load, only the pull; with rules that release rights with time, a load.
        #expect(!loads(edge.tick(now: 10, timedReleases: false)))
        #expect(loads(edge.tick(now: 20, timedReleases: true)))
        _ = edge.entriesLoaded([], now: 21)
        // A local change is pushed at once; once acknowledged, the next tick loads nothing.
        #expect(loads(edge.localChange()))
        _ = edge.entriesLoaded([Self.entry(1)], now: 30)
        _ = edge.received(.ack(upTo: 1), now: 31)
        #expect(!loads(edge.tick(now: 40, timedReleases: false)))
        // A push left unanswered is loaded and sent again at the tick after the retry time.
        _ = edge.localChange()
        _ = edge.entriesLoaded([Self.entry(2)], now: 50)
        #expect(!loads(edge.tick(now: 60, timedReleases: false)))
        #expect(loads(edge.tick(now: 6_000, timedReleases: false)))
        _ = edge.entriesLoaded([Self.entry(2)], now: 6_001)
        _ = edge.received(.ack(upTo: 2), now: 6_002)
        // A change applied from the hub may have queued rights to hand back: the next tick loads.
        _ = edge.received(.changes(entries: [], upTo: 30, more: false, snapshots: [Self.snapshot]), now: 6_003)
        _ = edge.changesApplied(upTo: 30, more: false, now: 6_004)
        #expect(loads(edge.tick(now: 6_010, timedReleases: false)))
        _ = edge.entriesLoaded([], now: 6_011)
        #expect(!loads(edge.tick(now: 6_020, timedReleases: false)))
        // A load the driver could not read is tried again at the next tick.
        _ = edge.localChange()
        edge.entriesLoadFailed()
        #expect(loads(edge.tick(now: 6_030, timedReleases: false)))
    }

    static func entry(_ sequence: UInt64) -> LogEntry {
        LogEntry(
            origin: NodeID(1), sequence: sequence, timestamp: HLCTimestamp(rawValue: sequence), idempotencyKey: "",
            operation: .rightsMove(member: member.member, account: .main, to: .hub, points: 0), effects: [])
    }

    @Test func aScopedFeedReachesTheDriverWithItsSnapshots() {
        var edge = online(hubMinor: WireVersion.minor)
        _ = edge.tick(now: 10)
        let actions = edge.received(.changes(entries: [], upTo: 9, more: false, snapshots: [Self.snapshot]), now: 11)
        #expect(actions == [.applyChanges([], upTo: 9, more: false, snapshots: [Self.snapshot])])
    }
}

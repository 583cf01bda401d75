import EdgeNode
import Foundation
import NodeKit
import SyncProtocol
import Testing

@testable import HubNode

/// A clock the test moves.
final class TestClock: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var milliseconds: UInt64 = 1_793_577_600_000
    var now: UInt64 { lock.withLock { milliseconds } }
    func advance(days: UInt64) { lock.withLock { milliseconds += days * 86_400_000 } }
}

/// Two real store ledgers and the hub's, synced by hand: rights placement end to end.
@Suite struct PlacementTests {
    struct Store {
        let ledger: EdgeLedger
        let db: SQLiteConnection
        var watermark: UInt64 = 0
    }

    let clock = TestClock()

    func store(_ node: UInt32, placementDays: UInt64) throws -> Store {
        var key = [UInt8](repeating: 7, count: 32)
        var ledger = EdgeLedger(
            node: NodeID(node), rules: PartnerRules(), phoneKey: SecretBytes(consuming: &key),
            placementDays: placementDays)
        let clock = self.clock
        ledger.now = { clock.now }
        return Store(ledger: ledger, db: try EdgeLedger.openInMemory())
    }

    /// The store pushes what the hub lacks, then pulls the feed.
    func sync(_ store: inout Store, _ hub: HubLedger, _ hubDB: any SQLDatabase) throws -> [LogEntry] {
        let high = try hub.originHighWater(hubDB, origin: store.ledger.node)
        let push = try store.db.transaction { try store.ledger.preparePush(store.db, after: high, limit: 10_000) }
        _ = try hubDB.transaction { try hub.merge(hubDB, from: store.ledger.node, entries: push) }
        try store.db.transaction { try store.ledger.acknowledge(store.db, upTo: push.last?.sequence ?? high) }
        let feed = try hub.feed(hubDB, after: store.watermark, limit: 10_000, excluding: store.ledger.node)
        let (ledger, db) = (store.ledger, store.db)
        _ = try db.transaction { try ledger.applyFeed(db, feed.entries, upTo: feed.upTo) }
        store.watermark = feed.upTo
        return push
    }

    func buy(_ store: Store, _ receipt: String, amount: UInt64 = 200_000, redeem: UInt64 = 0, offline: Bool = false)
        throws -> PurchaseOutcome
    {
        let request = PurchaseRequest(
            card: "4600000000015", amountMinor: amount, redeemPoints: redeem, lane: "1", receipt: receipt)
        let connectivity: Connectivity =
            offline ? .offline(since: clock.now - 60_000, now: clock.now) : .online(now: clock.now)
        return try store.db.transaction { try store.ledger.purchase(store.db, request, connectivity: connectivity) }
    }

    static func moves(_ entries: [LogEntry]) -> [(to: NodeID, points: UInt64)] {
        entries.compactMap {
            if case .rightsMove(_, .main, let to, let points) = $0.operation { return (to, points) }
            return nil
        }
    }

    @Test(arguments: HubBackend.available)
    func regularsRedeemOfflineAtTheirStoreAndRightsFollowThemAndAgeOut(backend: HubBackend) throws {
        let hubDB = try openHub(backend)
        var hub = HubLedger()
        hub.placementDays = 30
        let clock = self.clock
        hub.now = { clock.now }
        var s = try store(1, placementDays: 30)
        var t = try store(2, placementDays: 30)

        let member = try s.db.transaction {
            try s.ledger.register(s.db, card: "4600000000015", phone: nil, referrer: nil)
        }
        guard case .completed(let first) = try buy(s, "S-1") else {
            Issue.record("purchase refused")
            return
        }
        #expect(first.pointsEarned > 0)
        // The member's store keeps the rights it earned them: nothing goes to the hub.
        #expect(Self.moves(try sync(&s, hub, hubDB)).isEmpty)
        _ = try sync(&t, hub, hubDB)
        // Offline, the store redeems from what it kept.
        guard case .completed(let second) = try buy(s, "S-2", redeem: 10, offline: true) else {
            Issue.record("offline redemption at the member's store refused")
            return
        }
        #expect(throws: PosError.self) { _ = try buy(t, "T-0", redeem: 10, offline: true) }

        // The member shops at T: T keeps what it earned them, S hands the rest back once it
        // hears of it, and the hub places those rights at T.
        guard case .completed(let atT) = try buy(t, "T-1") else {
            Issue.record("purchase at T refused")
            return
        }
        #expect(Self.moves(try sync(&t, hub, hubDB)).isEmpty)
        _ = try sync(&s, hub, hubDB)  // S learns of T's purchase
        let released = Self.moves(try sync(&s, hub, hubDB))
        #expect(released.count == 1 && released.first?.to == .hub)
        _ = try sync(&t, hub, hubDB)  // T receives the hub's placement
        let counter = try hub.counter(hubDB, member: member.id, account: .main)
        let balance = Int64(first.pointsEarned + second.pointsEarned + atT.pointsEarned) - 10
        #expect(counter.balance == balance)
        #expect(counter.rights(NodeID(2)) == balance && counter.rights(.hub) == 0 && counter.rights(NodeID(1)) == 0)
        guard case .completed = try buy(t, "T-2", redeem: UInt64(balance), offline: true) else {
            Issue.record("T could not redeem the whole balance offline")
            return
        }
        _ = try sync(&t, hub, hubDB)

        // After the placement days without a purchase, T hands the rights back and the hub keeps them.
        _ = try buy(t, "T-3")
        _ = try sync(&t, hub, hubDB)
        clock.advance(days: 31)
        let aged = Self.moves(try sync(&t, hub, hubDB))
        #expect(aged.count == 1 && aged.first?.to == .hub)
        let after = try hub.counter(hubDB, member: member.id, account: .main)
        #expect(after.rights(.hub) == after.balance && after.balance > 0)
    }

    @Test func withoutPlacementEveryStoreHandsRightsBackAtOnce() throws {
        let hubDB = try openHub()
        let hub = HubLedger()
        var s = try store(1, placementDays: 0)
        let member = try s.db.transaction {
            try s.ledger.register(s.db, card: "4600000000015", phone: nil, referrer: nil)
        }.id
        // Online, the sale's own entry hands what it earned back: no separate move follows.
        guard case .completed(let online) = try buy(s, "S-1") else {
            Issue.record("the online sale did not complete")
            return
        }
        let pushed = try sync(&s, hub, hubDB)
        #expect(Self.moves(pushed).isEmpty && pushed.count == 2)
        #expect(
            pushed.last?.effects.contains { $0.slot == .moved(NodeID(1), .hub) && $0.value == online.pointsEarned }
                == true)
        let counter = try hub.counter(hubDB, member: member, account: .main)
        #expect(counter.rights(.hub) == Int64(online.pointsEarned) && counter.rights(NodeID(1)) == 0)
        #expect(throws: PosError.self) { _ = try buy(s, "S-2", redeem: 10, offline: true) }
        // Offline, the store keeps what it earns, and the next push hands it back.
        guard case .completed(let offline) = try buy(s, "S-3", offline: true) else {
            Issue.record("the offline sale did not complete")
            return
        }
        let later = Self.moves(try sync(&s, hub, hubDB))
        #expect(later.count == 1 && later.first?.to == .hub && later.first?.points == offline.pointsEarned)
        let after = try hub.counter(hubDB, member: member, account: .main)
        #expect(after.rights(.hub) == after.balance && after.rights(NodeID(1)) == 0)
    }
}

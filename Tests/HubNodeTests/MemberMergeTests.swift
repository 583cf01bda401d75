import EdgeNode
import Foundation
import NodeKit
import SyncProtocol
import Testing

@testable import HubNode

/// The same person registered offline at two stores with one phone number: the hub merges
/// the records (real store ledgers and the hub's, synced by hand).
@Suite struct MemberMergeTests {
    let clock = TestClock()
    static let rules = RulesDocument(
        version: 1, issuedAtMilliseconds: 1, phoneKey: [UInt8](repeating: 3, count: 32), welcomeBonus: 1_000)

    func store(_ node: UInt32) throws -> PlacementTests.Store {
        var key = [UInt8](repeating: 7, count: 32)
        var ledger = EdgeLedger(node: NodeID(node), rules: PartnerRules(), phoneKey: SecretBytes(consuming: &key))
        ledger.active.install(Self.rules)
        let clock = self.clock
        ledger.now = { clock.now }
        return PlacementTests.Store(ledger: ledger, db: try EdgeLedger.openInMemory())
    }

    /// A hub with the rules published (signed by `key`), its ledger on the suite's clock.
    func publishedHub(_ backend: HubBackend, signedBy key: SigningKeyPair) throws -> (HubLedger, any SQLDatabase) {
        let hubDB = try openHub(backend)
        try hubDB.run(
            "INSERT INTO rules(version, document, published_ms) VALUES(?, ?, ?)",
            [.int(1), .blob(Self.rules.signed(by: key)), .int(1)])
        var hub = HubLedger()
        let clock = self.clock
        hub.now = { clock.now }
        return (hub, hubDB)
    }

    func sync(_ store: inout PlacementTests.Store, _ hub: HubLedger, _ hubDB: any SQLDatabase) throws {
        let high = try hub.originHighWater(hubDB, origin: store.ledger.node)
        let push = try store.db.transaction { try store.ledger.preparePush(store.db, after: high, limit: 10_000) }
        _ = try hubDB.transaction { try hub.merge(hubDB, from: store.ledger.node, entries: push) }
        let feed = try hub.feed(hubDB, after: store.watermark, limit: 10_000, excluding: store.ledger.node)
        let (ledger, db) = (store.ledger, store.db)
        _ = try db.transaction { try ledger.applyFeed(db, feed.entries, upTo: feed.upTo) }
        store.watermark = feed.upTo
    }

    /// A sale of 1,000.00: online its entry hands its rights back; offline the store keeps
    /// them until its next push.
    func buy(_ store: PlacementTests.Store, card: String, _ receipt: String, offline: Bool = false) throws -> UInt64 {
        let request = PurchaseRequest(card: card, amountMinor: 100_000, redeemPoints: 0, lane: "1", receipt: receipt)
        let connectivity: Connectivity =
            offline ? .offline(since: clock.now - 60_000, now: clock.now) : .online(now: clock.now)
        guard
            case .completed(let receipt) = try store.db.transaction({
                try store.ledger.purchase(store.db, request, connectivity: connectivity)
            })
        else { throw HubError("purchase refused") }
        return receipt.pointsEarned
    }

    @Test(arguments: HubBackend.available)
    func twoOfflineRegistrationsOfOnePhoneBecomeOneMemberWithOneWelcomeBonus(backend: HubBackend) throws {
        let hubKey = SigningKeyPair.generate()
        let (hub, hubDB) = try publishedHub(backend, signedBy: hubKey)
        var s = try store(1)
        var t = try store(2)
        let phone = "+4915112345678"
        let first = try s.db.transaction {
            try s.ledger.register(s.db, card: "4600000000015", phone: phone, referrer: nil)
        }
        let x = try buy(s, card: "4600000000015", "S-1")
        clock.advance(days: 1)
        let second = try t.db.transaction {
            try t.ledger.register(t.db, card: "4006381333931", phone: phone, referrer: nil)
        }
        let y = try buy(t, card: "4006381333931", "T-1")
        #expect(first.balance == 1_000 && second.balance == 1_000 && first.id != second.id)

        try sync(&s, hub, hubDB)
        try sync(&t, hub, hubDB)
        let expected = Int64(1_000 + x + y)
        // At the hub: the earlier record survives, with the points of both less one bonus.
        #expect(try hub.member(hubDB, card: "4006381333931")?.id == first.id)
        #expect(try hub.member(hubDB, card: "4006381333931")?.balance == expected)
        #expect(try hub.member(hubDB, card: "4600000000015")?.balance == expected)
        #expect(try hub.counter(hubDB, member: second.id, account: .main).balance == 0)
        let audit = try #require(try hub.memberMerges(hubDB).first)
        #expect(audit.survivor == first.id && audit.merged == second.id)
        #expect(audit.bonus == 1_000 && audit.reversed == 1_000 && audit.moved == y)
        // The operator's view by phone or by either card is the survivor, with both histories.
        let view = try #require(
            try OperatorQueries(hubKey: hubKey.publicKey).member(
                hubDB, card: "4006381333931", phone: nil, scope: nil, now: clock.now))
        #expect(view["member"] == .string(first.id.description) && view["balance"]?.intValue == expected)
        guard case .array(let history) = view["history"] else {
            Issue.record("no history")
            return
        }
        let types = history.compactMap { $0["type"]?.stringValue }
        #expect(types.filter { $0 == "registration" }.count == 2 && types.contains("merge"))

        // Both stores learn of it: either card and the phone name the survivor.
        try sync(&s, hub, hubDB)
        try sync(&t, hub, hubDB)
        for store in [s, t] {
            for card in ["4600000000015", "4006381333931"] {
                let found = try store.ledger.identify(store.db, card: card, phone: nil)
                #expect(found.id == first.id && found.balance == expected)
            }
            #expect(try store.ledger.identify(store.db, card: nil, phone: phone).id == first.id)
        }
        // A purchase with the second card now earns on the survivor.
        let z = try buy(t, card: "4006381333931", "T-2")
        try sync(&t, hub, hubDB)
        try sync(&s, hub, hubDB)
        #expect(try s.ledger.identify(s.db, card: "4600000000015", phone: nil).balance == expected + Int64(z))
        #expect(try hub.member(hubDB, card: "4600000000015")?.balance == expected + Int64(z))
        // Clearing still balances: the reversed bonus is nobody's debt.
        let report = try hub.clearing(hubDB, period: 0...UInt64.max)
        #expect(report.balances.values.reduce(0, +) == 0)
        #expect(report.liability.values.reduce(0, +) == UInt64(expected + Int64(z)))

        // Returning the merged record's purchase made before the merge takes its points back
        // from the survivor, which holds them now; the merged record stays at zero.
        let refund = try t.db.transaction {
            try t.ledger.refund(
                t.db,
                RefundRequest(lane: "1", receipt: "T-R1", originalLane: "1", originalReceipt: "T-1", amountMinor: nil))
        }
        #expect(refund.member == first.id && refund.pointsReversed == y)
        try sync(&t, hub, hubDB)
        try sync(&s, hub, hubDB)
        let after = expected + Int64(z) - Int64(y)
        #expect(try hub.member(hubDB, card: "4600000000015")?.balance == after)
        #expect(try hub.counter(hubDB, member: second.id, account: .main).balance == 0)
        #expect(try s.ledger.identify(s.db, card: "4006381333931", phone: nil).balance == after)
        let cleared = try hub.clearing(hubDB, period: 0...UInt64.max)
        #expect(cleared.balances.values.reduce(0, +) == 0)
        #expect(cleared.liability.values.reduce(0, +) == UInt64(after))
    }

    /// Points a store earned for a merged record before it heard of the merge reach the hub
    /// with a later push, among the purchases of `others` other members: whatever the number
    /// of members that push touches (the hub looks merged records up 1, 4, 16 or 64 at a
    /// time), and whether the sales handed their rights back themselves (online) or the
    /// push did (offline), they move to the survivor.
    @Test(arguments: [0, 1, 3, 4, 15, 16, 63, 64, 70], [false, true])
    func pointsOfAMergedRecordArrivingLaterMoveToTheSurvivor(others: Int, offline: Bool) throws {
        let (hub, hubDB) = try publishedHub(.sqlite, signedBy: SigningKeyPair.generate())
        var s = try store(1)
        var t = try store(2)
        let phone = "+4915112345678"
        let first = try s.db.transaction {
            try s.ledger.register(s.db, card: "4600000000015", phone: phone, referrer: nil)
        }
        clock.advance(days: 1)
        let second = try t.db.transaction {
            try t.ledger.register(t.db, card: "4006381333931", phone: phone, referrer: nil)
        }
        let cards = (1...max(others, 1)).map { CardNumber.issued(prefix: "47", serial: $0).digits }
        for card in cards.prefix(others) {
            _ = try t.db.transaction { try t.ledger.register(t.db, card: card, phone: nil, referrer: nil) }
        }
        // The later registration reaches the hub first; the earlier one merges it.
        try sync(&t, hub, hubDB)
        try sync(&s, hub, hubDB)
        #expect(try hub.member(hubDB, card: "4006381333931")?.id == first.id)
        let before = try #require(try hub.member(hubDB, card: "4600000000015")?.balance)

        // Store t has not heard of the merge: it sells on the merged record and to the others.
        let late = try buy(t, card: "4006381333931", "T-late", offline: offline)
        var othersEarned: [Int64] = []
        for (index, card) in cards.prefix(others).enumerated() {
            othersEarned.append(Int64(try buy(t, card: card, "T-\(index)", offline: offline)))
        }
        try sync(&t, hub, hubDB)
        #expect(try hub.member(hubDB, card: "4600000000015")?.balance == before + Int64(late))
        #expect(try hub.counter(hubDB, member: second.id, account: .main).balance == 0)
        for (card, earned) in zip(cards.prefix(others), othersEarned) {
            #expect(try hub.member(hubDB, card: card)?.balance == 1_000 + earned, "not merged: keeps its own")
        }
    }

    @Test(arguments: HubBackend.available)
    func differentPhonesAreNotMerged(backend: HubBackend) throws {
        let hubDB = try openHub(backend)
        var s = try store(1)
        var t = try store(2)
        _ = try s.db.transaction {
            try s.ledger.register(s.db, card: "4600000000015", phone: "+4915112345678", referrer: nil)
        }
        _ = try t.db.transaction {
            try t.ledger.register(t.db, card: "4006381333931", phone: "+4915112345679", referrer: nil)
        }
        try sync(&s, HubLedger(), hubDB)
        try sync(&t, HubLedger(), hubDB)
        #expect(try HubLedger().memberMerges(hubDB).isEmpty)
    }
}

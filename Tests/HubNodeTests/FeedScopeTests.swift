import EdgeNode
import Foundation
import NodeKit
import SyncProtocol
import Testing

@testable import HubNode

/// Partner-group feeds: real store ledgers and the hub's, synced by hand. Grocer and fuel
/// form the group "north"; pharmacy is a group of its own.
@Suite struct FeedScopeTests {
    /// A pull of a one-partner group reads its newcomers in the index's order: no temporary
    /// b-tree for sorting them, which SQLite opened at every pull, empty or not.
    @Test func newcomersAreReadInIndexOrderWithoutSorting() throws {
        let db = try openHub()
        let plan = try db.query(
            "EXPLAIN QUERY PLAN " + HubLedger.newcomersOfOnePartner,
            [.text("partner-1"), .int(0), .int(10), .int(5)]
        ).map { $0.text(3) }
        #expect(plan.contains { $0.contains("member_scope_partner") })
        #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "\(plan)")
    }

    static let scope = FeedScope(byPartnerGroup: true, groups: ["north": ["grocer", "fuel"]])
    static let card = "4600000000015"

    struct Store {
        let ledger: EdgeLedger
        let db: SQLiteConnection
        var watermark: UInt64 = 0
        var node: NodeID { ledger.node }
    }

    /// The hub, with the scope set as the rules would, and four enrolled stores:
    /// grocer, fuel, pharmacy, pharmacy.
    func world(_ backend: HubBackend) throws -> (hub: HubLedger, db: any SQLDatabase, stores: [Store]) {
        let db = try openHub(backend)
        var hub = HubLedger()
        hub.feedScope = Self.scope
        var stores: [Store] = []
        for (index, partner) in ["grocer", "fuel", "pharmacy", "pharmacy"].enumerated() {
            let record = try hub.enroll(
                db, name: "store-\(index + 1)", partner: partner, key: SigningKeyPair.generate().publicKey)
            var key = [UInt8](repeating: 7, count: 32)
            let ledger = EdgeLedger(node: record.id, rules: PartnerRules(), phoneKey: SecretBytes(consuming: &key))
            stores.append(Store(ledger: ledger, db: try EdgeLedger.openInMemory()))
        }
        return (hub, db, stores)
    }

    /// The store pushes what the hub lacks, then pulls its feed to the end.
    func sync(_ store: inout Store, _ hub: HubLedger, _ hubDB: any SQLDatabase, scoped: Bool = true) throws {
        let high = try hub.originHighWater(hubDB, origin: store.node)
        let push = try store.db.transaction { try store.ledger.preparePush(store.db, after: high, limit: 10_000) }
        _ = try hubDB.transaction { try hub.merge(hubDB, from: store.node, entries: push) }
        try store.db.transaction { try store.ledger.acknowledge(store.db, upTo: push.last?.sequence ?? high) }
        var more = true
        while more {
            let feed = try hub.feed(hubDB, after: store.watermark, limit: 64, excluding: store.node, scopable: true)
            #expect((feed.snapshots != nil) == scoped, "a scoped feed, or the whole")
            let (ledger, db) = (store.ledger, store.db)
            _ = try db.transaction {
                try ledger.applyFeed(db, feed.entries, upTo: feed.upTo, snapshots: feed.snapshots)
            }
            store.watermark = feed.upTo
            more = feed.more
        }
    }

    func register(_ store: Store, _ card: String, phone: String? = nil) throws -> MemberView {
        try store.db.transaction { try store.ledger.register(store.db, card: card, phone: phone, referrer: nil) }
    }

    func buy(_ store: Store, _ card: String, _ receipt: String) throws -> PurchaseReceipt {
        try buy(db: store.db, ledger: store.ledger, receipt, card: card)
    }

    func buy(db: SQLiteConnection, ledger: EdgeLedger, _ receipt: String, card: String = Self.card) throws
        -> PurchaseReceipt
    {
        let request = PurchaseRequest(card: card, amountMinor: 200_000, redeemPoints: 0, lane: "1", receipt: receipt)
        guard
            case .completed(let receipt) = try db.transaction({
                try ledger.purchase(db, request, connectivity: .online(now: wallClockMilliseconds()))
            })
        else { throw HubError("purchase refused") }
        return receipt
    }

    func knows(_ store: Store, _ card: String) -> Bool {
        (try? store.ledger.identify(store.db, card: card, phone: nil)) != nil
    }

    /// The store's slots equal the hub's for every member the store's group serves.
    func expectConverged(_ store: Store, _ hub: HubLedger, _ hubDB: any SQLDatabase, partner: String) throws {
        let partners = Self.scope.partners(inGroupOf: partner)
        let held = Set(
            try hubDB.query(
                "SELECT DISTINCT member FROM member_scope WHERE partner IN ("
                    + partners.map { _ in "?" }.joined(separator: ", ") + ")", partners.map { .text($0) }
            ).map { $0.uint(0) })
        let query = "SELECT member, account, kind, from_node, to_node, value FROM slots ORDER BY 1, 2, 3, 4, 5"
        let hubSlots = try hubDB.query(query).map { $0.values.map(\.integer) }.filter {
            held.contains(UInt64(bitPattern: $0[0]))
        }
        #expect(try store.db.query(query).map { $0.values.map(\.integer) } == hubSlots, "store \(store.node)")
    }

    @Test(arguments: HubBackend.available)
    func aStoreHoldsItsGroupsMembersAndLooksUpTheOthers(backend: HubBackend) throws {
        var (hub, hubDB, stores) = try world(backend)
        // A grocer's member, and a pharmacy's.
        let north = try register(stores[0], Self.card)
        _ = try buy(stores[0], Self.card, "A-1")
        let southCard = CardNumber.issued(prefix: "47", serial: 2).digits
        _ = try register(stores[2], southCard)
        _ = try buy(stores[2], southCard, "C-1")
        for _ in 0..<2 { for index in stores.indices { try sync(&stores[index], hub, hubDB) } }

        // Fuel (same group) holds the grocer's member; the pharmacies do not, and vice versa.
        #expect(knows(stores[1], Self.card))
        #expect(!knows(stores[2], Self.card) && !knows(stores[3], Self.card))
        #expect(knows(stores[3], southCard) && !knows(stores[0], southCard) && !knows(stores[1], southCard))
        // Every store's watermark still reached the end of the feed.
        let head = UInt64(try hubDB.scalar("SELECT MAX(feed_seq) FROM entries") ?? 0)
        #expect(stores.allSatisfy { $0.watermark == head })

        // The member shows up at a pharmacy: it asks the hub, which serves the member to the
        // pharmacies from now on.
        let found = try hubDB.transaction {
            try hub.lookupMember(hubDB, card: Self.card, phoneHashes: [], for: stores[2].node)
        }
        #expect(found.map(\.record.id) == [north.id])
        try stores[2].db.transaction { try stores[2].ledger.applySnapshots(stores[2].db, found) }
        #expect(
            try stores[2].ledger.identify(stores[2].db, card: Self.card, phone: nil).balance
                == (try hub.counter(hubDB, member: north.id, account: .main)).balance)
        _ = try buy(stores[2], Self.card, "C-2")
        // More of the grocer's entries after the pharmacy's gap in its log.
        _ = try buy(stores[0], Self.card, "A-2")
        for index in stores.indices { try sync(&stores[index], hub, hubDB) }
        for index in stores.indices { try sync(&stores[index], hub, hubDB) }

        // The other pharmacy received the member's snapshot when its watermark passed the
        // lookup, and both groups see every purchase of the member since.
        #expect(knows(stores[3], Self.card))
        let balance = try hub.counter(hubDB, member: north.id, account: .main).balance
        #expect(balance > 0)
        for store in stores {
            #expect(try store.ledger.identify(store.db, card: Self.card, phone: nil).balance == balance)
        }
        for (index, partner) in ["grocer", "fuel", "pharmacy", "pharmacy"].enumerated() {
            try expectConverged(stores[index], hub, hubDB, partner: partner)
        }
        // An unknown card is an empty answer, not an error; nothing is recorded for it.
        let nobody = try hubDB.transaction {
            try hub.lookupMember(
                hubDB, card: CardNumber.issued(prefix: "47", serial: 99).digits, phoneHashes: [[1, 2, 3]],
                for: stores[1].node)
        }
        #expect(nobody.isEmpty)

        // A grocer's member the pharmacies do not hold: their feed skips the registration.
        let late = CardNumber.issued(prefix: "47", serial: 5).digits
        _ = try register(stores[0], late)
        try sync(&stores[0], hub, hubDB)
        try sync(&stores[2], hub, hubDB)
        #expect(!knows(stores[2], late))

        // With the whole feed (the default) the same hub serves every member to every store.
        hub.feedScope = .all
        let whole = try hub.feed(hubDB, after: 0, limit: 512, excluding: stores[3].node, scopable: true)
        #expect(whole.snapshots == nil)
        #expect(whole.entries.contains { $0.entry.origin == stores[0].node })
        // Scoping turned off: a store that held only its group goes on with the whole feed
        // (the numbers it skipped are no gap to it) and meets the other group's members.
        let purchase = try buy(stores[0], late, "A-3")
        try sync(&stores[0], hub, hubDB, scoped: false)
        try sync(&stores[2], hub, hubDB, scoped: false)
        let slot = try stores[2].db.scalar(
            "SELECT value FROM slots WHERE member = ? AND kind = ?",
            [
                .uint(try stores[0].ledger.identify(stores[0].db, card: late, phone: nil).id.rawValue),
                .int(Int(SlotKind.earned.rawValue)),
            ])
        #expect(slot == Int64(purchase.pointsEarned), "the purchase reached the pharmacy")
    }

    @Test(arguments: HubBackend.available)
    func aMemberFoundByPhoneBringsTheRecordItWasMergedInto(backend: HubBackend) throws {
        var (hub, hubDB, stores) = try world(backend)
        // One person registered at the grocer and, offline, again at the pharmacy.
        let first = try register(stores[0], Self.card, phone: "+491701234567")
        let secondCard = CardNumber.issued(prefix: "47", serial: 3).digits
        let second = try register(stores[2], secondCard, phone: "+491701234567")
        _ = try buy(stores[2], secondCard, "C-1")
        for _ in 0..<2 { for index in stores.indices { try sync(&stores[index], hub, hubDB) } }
        let merged = try hub.memberMerges(hubDB)
        #expect(merged.count == 1 && merged.first?.survivor == first.id && merged.first?.merged == second.id)
        // The pharmacies now hold the survivor too, and the grocer's group the merged record:
        // the second card names the survivor everywhere.
        for store in stores {
            #expect(try store.ledger.identify(store.db, card: secondCard, phone: nil).id == first.id)
        }
        // A store that holds neither finds the person by phone, with both records.
        var fresh = [UInt8](repeating: 7, count: 32)
        let phoneHash = PhoneNumber("+491701234567")!.hash(key: SecretBytes(consuming: &fresh))
        let found = try hubDB.transaction {
            try hub.lookupMember(hubDB, card: "", phoneHashes: [phoneHash], for: stores[3].node)
        }
        #expect(Set(found.map(\.record.id)) == [first.id, second.id])
        #expect(found.first { $0.record.id == second.id }?.mergedInto == first.id)
        for (index, partner) in ["grocer", "fuel", "pharmacy", "pharmacy"].enumerated() {
            try expectConverged(stores[index], hub, hubDB, partner: partner)
        }
    }

    @Test(arguments: HubBackend.available)
    func importedMembersAreServedByTheirPartnerAndNumberingGoesOn(backend: HubBackend) throws {
        let (hub, hubDB, initial) = try world(backend)
        var stores = initial
        // 40 members: plain registrations go in by the chunk, the one with points by itself.
        let records = (1...40).map { serial in
            MemberRecord(
                id: MemberID(origin: stores[0].node, serial: UInt32(serial)),
                card: CardNumber.issued(prefix: "47", serial: 100 + serial).digits, phoneHash: [], referrer: nil,
                registeredAt: HLCTimestamp(rawValue: 1))
        }
        try hubDB.transaction { try hub.importMembers(hubDB, records, partner: "grocer") }
        var counter = EscrowCounter()
        let (slot, value) = try counter.earn(at: stores[0].node, 25)
        try stores[0].db.transaction {
            try stores[0].ledger.importMembers(
                stores[0].db,
                records.map { record in
                    MemberSnapshot(
                        record: record,
                        slots: record.id.rawValue & 0xFFFF_FFFF == 7
                            ? [SlotWrite(member: record.id, account: .main, slot: slot, value: value)] : [])
                })
        }
        #expect(try stores[0].ledger.status(stores[0].db).members == 40)
        #expect(try stores[0].ledger.identify(stores[0].db, card: records[6].card, phone: nil).balance == 25)
        #expect(try stores[0].ledger.identify(stores[0].db, card: records[39].card, phone: nil).balance == 0)
        // The grocer's store holds them and registers the next member after them.
        let next = try register(stores[0], Self.card)
        #expect(next.id == MemberID(origin: stores[0].node, serial: 41))
        _ = try buy(stores[0], records[1].card, "A-1")
        for _ in 0..<2 { for index in stores.indices { try sync(&stores[index], hub, hubDB) } }
        // The fuel station (same group) receives the purchase of an imported member; the
        // pharmacy finds them by card.
        let rows = try hubDB.query("SELECT partner FROM member_scope WHERE member = ?", [.uint(records[1].id.rawValue)])
        #expect(rows.map { $0.text(0) } == ["grocer"])
        #expect(
            try stores[1].db.scalar("SELECT COUNT(*) FROM slots WHERE member = ?", [.uint(records[1].id.rawValue)]) ?? 0
                > 0)
        let found = try hubDB.transaction {
            try hub.lookupMember(hubDB, card: records[2].card, phoneHashes: [], for: stores[2].node)
        }
        #expect(found.map(\.record) == [records[2]])
    }

    /// Several partners' members in one import: into an empty hub its member indexes are
    /// built once at the end (the same indexes, used again by lookups); into a hub that holds
    /// members they are kept as they are. Either way every member is found by card and phone
    /// and served by its partner. A failed import takes nothing away.
    @Test(arguments: HubBackend.available)
    func aBatchImportKeepsTheMemberIndexesAndFindsEveryMember(backend: HubBackend) throws {
        let (hub, hubDB, stores) = try world(backend)
        func indexes() throws -> [String] {
            guard hubDB.dialect == .sqlite else { return [] }
            return try hubDB.query(
                "SELECT name || ':' || sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'members' ORDER BY 1"
            ).map { $0.text(0) }
        }
        let before = try indexes()
        func records(_ store: Int, _ serials: ClosedRange<Int>) -> [MemberRecord] {
            serials.map { serial in
                MemberRecord(
                    id: MemberID(origin: stores[store].node, serial: UInt32(serial)),
                    card: CardNumber.issued(prefix: "47", serial: store * 1_000 + serial).digits,
                    phoneHash: [UInt8](repeating: UInt8(store), count: 31) + [UInt8(serial)], referrer: nil,
                    registeredAt: HLCTimestamp(rawValue: 1))
            }
        }
        // An import into the empty hub that fails leaves neither its members nor a missing index behind.
        #expect(throws: (any Error).self) {
            try hubDB.transaction {
                try hub.importMembers(hubDB) { add in
                    try add(records(3, 1...3), "pharmacy")
                    throw HubError("the export file ends early")
                }
            }
        }
        #expect(try hub.member(hubDB, card: records(3, 1...1)[0].card) == nil)
        #expect(try indexes() == before)
        let first = [("grocer", records(0, 1...20)), ("pharmacy", records(2, 1...20))]
        // A batch sent twice (an export read again) adds nobody twice.
        try hubDB.transaction {
            try hub.importMembers(hubDB) { add in for (p, r) in first + first.prefix(1) { try add(r, p) } }
        }
        #expect(try hubDB.scalar("SELECT COUNT(*) FROM members") == 40)
        #expect(try indexes() == before)
        if hubDB.dialect == .sqlite {
            let plan = try hubDB.query("EXPLAIN QUERY PLAN SELECT id FROM members WHERE card = ?", [.text("x")])
            #expect(
                plan.contains { $0.values.contains(.text("SEARCH members USING COVERING INDEX members_card (card=?)")) }
            )
        }
        // A second import into a hub that holds members now.
        let second = [("fuel", records(1, 1...5))]
        try hubDB.transaction { try hub.importMembers(hubDB) { add in for (p, r) in second { try add(r, p) } } }
        #expect(try indexes() == before)
        for (partner, batch) in first + second {
            for record in batch {
                let found = try hubDB.transaction {
                    try hub.lookupMember(hubDB, card: "", phoneHashes: [record.phoneHash], for: stores[3].node)
                }
                #expect(found.map(\.record) == [record])
                #expect(try hub.member(hubDB, card: record.card)?.id == record.id)
                let scope = try hubDB.query(
                    "SELECT partner FROM member_scope WHERE member = ? ORDER BY partner", [.uint(record.id.rawValue)])
                #expect(scope.map { $0.text(0) }.contains(partner))
            }
        }
    }

    @Test(arguments: HubBackend.available)
    func rulesTurnPartnerGroupsOnForWhatStoresAlreadyHold(backend: HubBackend) throws {
        let hubDB = try openHub(backend)
        let hub = HubLedger()
        let key = SigningKeyPair.generate()
        let grocer = try hub.enroll(hubDB, name: "g", partner: "grocer", key: SigningKeyPair.generate().publicKey)
        var k = [UInt8](repeating: 7, count: 32)
        let ledger = EdgeLedger(node: grocer.id, rules: PartnerRules(), phoneKey: SecretBytes(consuming: &k))
        let db = try EdgeLedger.openInMemory()
        let member = try db.transaction { try ledger.register(db, card: Self.card, phone: nil, referrer: nil) }
        let push = try db.transaction { try ledger.preparePush(db, after: 0, limit: 100) }
        _ = try hubDB.transaction { try hub.merge(hubDB, from: grocer.id, entries: push) }
        #expect(try hubDB.scalar("SELECT COUNT(*) FROM member_scope") == 0)

        let document = try hub.publishRules(
            hubDB,
            try RulesFile.parse(
                """
                [feed]
                scope = "partner-group"
                [feed.groups]
                north = ["grocer", "fuel"]
                """), hub: key)
        #expect(document.feedScope == Self.scope)
        #expect(try RulesDocument(decoding: document.encoded).feedScope == Self.scope)
        #expect(try hub.currentScope(hubDB) == Self.scope)
        // Members already known count as held by the partners whose stores wrote about them.
        let rows = try hubDB.query("SELECT member, partner, since FROM member_scope")
        #expect(rows.map { [$0.uint(0), $0.uint(2)] } == [[member.id.rawValue, 0]])
        #expect(rows.first?.text(1) == "grocer")
        #expect(try hubDB.scalar("SELECT COUNT(*) FROM scope_feed") == 1, "the registration, filed under grocer")

        // Turned off, nothing is kept or filed per partner; turned on again, it is rebuilt.
        _ = try hub.publishRules(hubDB, try RulesFile.parse("[feed]\nscope = \"all\""), hub: key)
        _ = try buy(db: db, ledger: ledger, "A-1")
        let more = try db.transaction { try ledger.preparePush(db, after: UInt64(push.count), limit: 100) }
        _ = try hubDB.transaction { try hub.merge(hubDB, from: grocer.id, entries: more) }
        #expect(try hubDB.scalar("SELECT COUNT(*) FROM member_scope") == 0)
        #expect(try hubDB.scalar("SELECT COUNT(*) FROM scope_feed") == 0)
        _ = try hub.publishRules(hubDB, try RulesFile.parse("[feed]\nscope = \"partner-group\""), hub: key)
        let entries = try hubDB.scalar("SELECT COUNT(*) FROM entries") ?? 0
        #expect(entries > 1)
        #expect(try hubDB.scalar("SELECT COUNT(*) FROM scope_feed") == entries)

        #expect(throws: HubError.self) {
            _ = try RulesFile.parse("[feed]\nscope = \"everyone\"").document(
                version: 1, issuedAt: 1, phoneKey: Array(repeating: 1, count: 32))
        }
        let twoGroups = try RulesFile.parse(
            "[feed]\nscope = \"partner-group\"\n[feed.groups]\na = [\"x\"]\nb = [\"x\"]")
        #expect(throws: HubError.self) { _ = try hub.publishRules(hubDB, twoGroups, hub: key) }
    }
}

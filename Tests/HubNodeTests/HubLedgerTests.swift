import Foundation
import NodeKit
import SyncProtocol
import Testing

@testable import HubNode

private let storeA = NodeID(1)
private let storeB = NodeID(2)
private let member = MemberID(origin: storeA, serial: 1)

/// The hub's backends: every test taking a backend runs on SQLite, and on PostgreSQL too when
/// `LOYALTY_TEST_POSTGRES` holds a server's address (`make test` starts one and sets it).
enum HubBackend: String, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    static var available: [HubBackend] { postgresURL == nil ? [.sqlite] : [.sqlite, .postgres] }
    static var postgresURL: String? { ProcessInfo.processInfo.environment["LOYALTY_TEST_POSTGRES"] }
    var testDescription: String { rawValue }
}

/// A fresh, empty hub database: a new SQLite file, or a new schema of the test PostgreSQL.
func openHub(_ backend: HubBackend = .sqlite) throws -> any SQLDatabase {
    try HubLedger.open(try freshHubLocation(backend))
}

func freshHubLocation(_ backend: HubBackend) throws -> HubDatabaseLocation {
    switch backend {
    case .sqlite:
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hub-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return .sqlite(path: directory.appendingPathComponent("hub.sqlite").path)
    case .postgres:
        let url = try #require(HubBackend.postgresURL)
        let schema = "test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        return .postgres(try PostgresLocation(url: url + "?schema=" + schema))
    }
}

private func entry(_ origin: NodeID, _ sequence: UInt64, earned: UInt64? = nil, moveToHub: UInt64? = nil) -> LogEntry {
    var effects: [SlotWrite] = []
    var operation = Operation.registerMember(
        MemberRecord(
            id: member, card: "4600000000015", phoneHash: [], referrer: nil, registeredAt: HLCTimestamp(rawValue: 1)))
    if let earned {
        effects.append(SlotWrite(member: member, account: .main, slot: .earned(origin), value: earned))
        operation = .purchase(
            PurchaseRecord(
                member: member, lane: "1", receipt: "r\(sequence)", amountMinor: earned * 2000, pointsEarned: earned,
                pointsRedeemed: 0))
    }
    if let moveToHub {
        effects.append(SlotWrite(member: member, account: .main, slot: .moved(origin, .hub), value: moveToHub))
        operation = .rightsMove(member: member, account: .main, to: .hub, points: moveToHub)
    }
    return LogEntry(
        origin: origin, sequence: sequence, timestamp: HLCTimestamp(rawValue: sequence), idempotencyKey: "",
        operation: operation, effects: effects)
}

@Suite struct HubLedgerTests {
    let ledger = HubLedger()

    @Test(arguments: HubBackend.available)
    func storesAreEnrolledOnceAndRevokedStoresAreNotFound(backend: HubBackend) throws {
        let db = try openHub(backend)
        let key = SigningKeyPair.generate().publicKey
        let store = try ledger.enroll(db, name: "A", partner: "grocer", key: key)
        #expect(store.id == NodeID(1))
        #expect(throws: HubError.self) { _ = try ledger.enroll(db, name: "A2", partner: "grocer", key: key) }
        #expect(throws: HubError.self) {
            _ = try ledger.enroll(db, name: "A", partner: "grocer", key: SigningKeyPair.generate().publicKey)
        }
        #expect(try ledger.store(db, key: key)?.name == "A")
        _ = try ledger.revoke(db, name: "A")
        #expect(try ledger.store(db, key: key) == nil)
        #expect(throws: HubError.self) { _ = try ledger.revoke(db, name: "nobody") }
    }

    @Test(arguments: HubBackend.available)
    func mergingTheSamePushTwiceChangesNothing(backend: HubBackend) throws {
        let db = try openHub(backend)
        let push = [entry(storeA, 1), entry(storeA, 2, earned: 100)]
        #expect(try ledger.merge(db, from: storeA, entries: push) == 2)
        #expect(try ledger.merge(db, from: storeA, entries: push) == 2)
        #expect(try db.scalar("SELECT COUNT(*) FROM entries") == 2)
        #expect(try ledger.member(db, card: "4600000000015")?.balance == 100)
    }

    @Test(arguments: HubBackend.available)
    func aGapOrAForeignOriginIsRefusedAndNothingIsMerged(backend: HubBackend) throws {
        let db = try openHub(backend)
        #expect(throws: MergeError.refused(.gap(origin: storeA, expected: 1, got: 2))) {
            _ = try ledger.merge(db, from: storeA, entries: [entry(storeA, 2)])
        }
        #expect(throws: MergeError.refused(.wrongOrigin(claimed: storeB, authenticated: storeA))) {
            _ = try ledger.merge(db, from: storeA, entries: [entry(storeB, 1)])
        }
        var forged = entry(storeA, 1, earned: 10)
        forged.effects.append(SlotWrite(member: member, account: .main, slot: .earned(storeB), value: 999))
        #expect(throws: MergeError.refused(.foreignSlot(origin: storeA, slotOwner: storeB))) {
            _ = try ledger.merge(db, from: storeA, entries: [forged])
        }
    }

    @Test(arguments: HubBackend.available)
    func theFeedSkipsTheAskersOwnEntriesButMovesItsWatermarkPast(backend: HubBackend) throws {
        let db = try openHub(backend)
        _ = try ledger.merge(db, from: storeA, entries: [entry(storeA, 1), entry(storeA, 2, earned: 100)])
        let forA = try ledger.feed(db, after: 0, limit: 10, excluding: storeA)
        #expect(forA.entries.isEmpty && forA.upTo == 2 && !forA.more)
        let forB = try ledger.feed(db, after: 0, limit: 1, excluding: storeB)
        #expect(forB.entries.map(\.entry.sequence) == [1] && forB.upTo == 1 && forB.more)
    }

    @Test(arguments: HubBackend.available)
    func rightsAreGrantedOnlyFromWhatTheHubHolds(backend: HubBackend) throws {
        let db = try openHub(backend)
        _ = try ledger.merge(db, from: storeA, entries: [entry(storeA, 1), entry(storeA, 2, earned: 100)])
        #expect(try ledger.grant(db, member: member, account: .main, to: storeB, points: 40).granted == 0)
        _ = try ledger.merge(db, from: storeA, entries: [entry(storeA, 3, moveToHub: 100)])
        let first = try ledger.grant(db, member: member, account: .main, to: storeB, points: 40)
        #expect(first.granted == 40 && first.entry?.origin == .hub && first.entry?.sequence == 1)
        let second = try ledger.grant(db, member: member, account: .main, to: storeB, points: 100)
        #expect(second.granted == 60)
        #expect(try ledger.grant(db, member: member, account: .main, to: storeB, points: 1).granted == 0)
        let counter = try ledger.counter(db, member: member, account: .main)
        #expect(counter.rights(storeB) == 100 && counter.rights(.hub) == 0 && counter.balance == 100)
    }
}

@Suite struct RulesPublishingTests {
    @Test(arguments: HubBackend.available)
    func eachPublicationIsTheNextSignedVersionAndKeepsThePhoneKey(backend: HubBackend) throws {
        let db = try openHub(backend)
        let hub = SigningKeyPair.generate()
        let first = try HubLedger().publishRules(
            db, try RulesFile.parse("[default]\naccrual_bp = 500\n[partners.fuel]\naccrual_bp = 100\n"), hub: hub)
        let second = try HubLedger().publishRules(
            db, try RulesFile.parse("[offline]\nmax_points_per_redemption = 50\n"), hub: hub)
        #expect(first.version == 1 && second.version == 2)
        #expect(first.partner("fuel").accrualBasisPoints == 100 && first.partner("grocer").accrualBasisPoints == 500)
        #expect(second.phoneKey == first.phoneKey && first.phoneKey.count == 32)
        let latest = try #require(try HubLedger().latestRules(db, newerThan: 1))
        #expect(try RulesDocument.verify(latest.document, hubKey: hub.publicKey) == second)
        #expect(try HubLedger().latestRules(db, newerThan: 2) == nil)
    }

    @Test(arguments: HubBackend.available)
    func badRulesFilesAreRefusedWithTheReason(backend: HubBackend) throws {
        let db = try openHub(backend)
        let hub = SigningKeyPair.generate()
        let syntax = #expect(throws: HubError.self) { _ = try RulesFile.parse("[default\naccrual_bp = 5") }
        #expect(syntax?.description.contains("line 1") == true)
        #expect(throws: HubError.self) { _ = try RulesFile.parse("[default]\naccrual_bp = \"five\"") }
        let nonsense = #expect(throws: HubError.self) {
            _ = try HubLedger().publishRules(db, try RulesFile.parse("[default]\naccrual_bp = 20000\n"), hub: hub)
        }
        #expect(nonsense?.description.contains("basis points") == true)
        #expect(try HubLedger().latestRules(db, newerThan: 0) == nil, "nothing was published")
    }
}

@Suite struct RulesFileCampaignTests {
    @Test func campaignsAndBonusesAreReadFromTheRulesFile() throws {
        let file = try RulesFile.parse(
            """
            time_zone_offset_minutes = 180
            [bonuses]
            welcome = 1000
            referral = 3000
            [[campaigns]]
            partner = "fuel"
            from = "2026-12-01"
            to = "2026-12-31"
            multiplier_percent = 200
            [placement]
            days = 30
            """)
        let document = try file.document(version: 1, issuedAt: 0, phoneKey: [UInt8](repeating: 0, count: 32))
        #expect(
            document.welcomeBonus == 1_000 && document.referralBonus == 3_000 && document.timeZoneOffsetMinutes == 180)
        #expect(document.placementDays == 30)
        #expect(
            document.campaigns
                == [
                    Campaign(
                        partner: "fuel", firstDay: Campaign.day(year: 2026, month: 12, day: 1),
                        lastDay: Campaign.day(year: 2026, month: 12, day: 31), multiplierPercent: 200)
                ])
        let bad = try RulesFile.parse("[[campaigns]]\nfrom = \"2026-12-01\"\nto = \"31.12.2026\"\n")
        #expect(throws: HubError.self) { _ = try bad.document(version: 1, issuedAt: 0, phoneKey: []) }
    }
}

@Suite struct PromoCodeTests {
    @Test(arguments: HubBackend.available)
    func aCodeIsCreditedOnceAcrossTheCoalition(backend: HubBackend) throws {
        let db = try openHub(backend)
        let codes = try HubLedger().createPromoCodes(db, points: 500, count: 3)
        #expect(Set(codes).count == 3 && codes.allSatisfy { $0.count == 10 })
        let first = try HubLedger().activatePromo(db, code: codes[0].lowercased(), member: member, store: storeA)
        #expect(first.points == 500 && first.refusal == nil)
        guard case .promoCredit(_, _, 500)? = first.entry?.operation else {
            Issue.record("expected a promo credit entry, got \(String(describing: first.entry))")
            return
        }
        #expect(try HubLedger().counter(db, member: member, account: .promo).balance == 500)
        let again = try HubLedger().activatePromo(db, code: codes[0], member: member, store: storeB)
        #expect(again.entry == nil && again.refusal?.contains("already used") == true)
        let unknown = try HubLedger().activatePromo(db, code: "NOPE", member: member, store: storeA)
        #expect(unknown.refusal == "unknown promo code NOPE")
        #expect(throws: HubError.self) { _ = try HubLedger().createPromoCodes(db, points: 0, count: 1) }
    }
}

@Suite struct ClearingReportTests {
    @Test(arguments: HubBackend.available)
    func theHubAttributesPointsSpentAtOneStoreToThePartnerThatGaveThem(backend: HubBackend) throws {
        let db = try openHub(backend)
        let ledger = HubLedger()
        _ = try ledger.enroll(db, name: "A", partner: "grocer", key: SigningKeyPair.generate().publicKey)
        _ = try ledger.enroll(db, name: "B", partner: "fuel", key: SigningKeyPair.generate().publicKey)
        _ = try ledger.merge(db, from: storeA, entries: [entry(storeA, 1), entry(storeA, 2, earned: 100)])
        var spend = entry(storeB, 1)
        spend.effects = [SlotWrite(member: member, account: .main, slot: .spent(storeB), value: 30)]
        spend.timestamp = HLCTimestamp(rawValue: 10)
        _ = try ledger.merge(db, from: storeB, entries: [spend])
        let report = try ledger.clearing(db, period: 0...UInt64.max)
        #expect(report.gross["grocer"]?["fuel"] == 30)
        #expect(report.csv.contains("grocer,fuel,30"))
        #expect(report.json["balances"]?["fuel"] == 30)
    }
}

@Suite struct ExposureReportTests {
    @Test(arguments: HubBackend.available)
    func uncoveredOfflineRedemptionsAreReportedPerStoreWithTheirOutcome(backend: HubBackend) throws {
        let db = try openHub(backend)
        let ledger = HubLedger()
        _ = try ledger.enroll(db, name: "A", partner: "grocer", key: SigningKeyPair.generate().publicKey)
        _ = try ledger.enroll(db, name: "B", partner: "fuel", key: SigningKeyPair.generate().publicKey)
        _ = try ledger.merge(db, from: storeA, entries: [entry(storeA, 1), entry(storeA, 2, earned: 10)])
        let uncovered = LogEntry(
            origin: storeB, sequence: 1, timestamp: HLCTimestamp(rawValue: 9), idempotencyKey: "1/x",
            operation: .purchase(
                PurchaseRecord(
                    member: member, lane: "1", receipt: "x", amountMinor: 10_000, pointsEarned: 0, pointsRedeemed: 30,
                    uncoveredPoints: 30)),
            effects: [SlotWrite(member: member, account: .main, slot: .spent(storeB), value: 30)])
        _ = try ledger.merge(db, from: storeB, entries: [uncovered])
        let rows = try ledger.exposure(db)
        #expect(rows.count == 1)
        #expect(rows.first?.store == "B" && rows.first?.points == 30 && rows.first?.redemptions == 1)
        #expect(rows.first?.membersNowInDebt == 1, "10 earned, 30 redeemed: the member owes 20")
    }
}

@Suite struct AnalyticsTests {
    static let today: Int64 = 20_000

    static let cases: [(joined: Int64, purchases: [Int64], spend: UInt64, segment: Segment)] = [
        (today - 10, [today - 1], 100_000, .newcomers),
        (today - 400, [], 0, .lost),
        (today - 400, [today - 200], 5_000_000, .lost),
        (today - 400, [today - 100], 0, .sleepers),
        (today - 400, [today - 1, today - 10, today - 20, today - 30], 2_500_000, .core),
        (today - 400, [today - 1, today - 10, today - 20, today - 30], 300_000, .loyal),
        (today - 400, [today - 5], 3_000_000, .whales),
        (today - 400, [today - 5], 10_000, .loyal),
    ]

    @Test(arguments: cases)
    func membersFallInTheDocumentedSegments(
        joined: Int64, purchases: [Int64], spend: UInt64, segment: Segment
    ) {
        #expect(
            RFMThresholds().segment(joinedDay: joined, purchaseDays: purchases, windowSpend: spend, today: Self.today)
                == segment)
    }

    @Test(arguments: HubBackend.available)
    func partnerFiguresCountParticipantsPurchasesChecksAndRetention(backend: HubBackend) throws {
        let db = try openHub(backend)
        let ledger = HubLedger()
        _ = try ledger.enroll(db, name: "A", partner: "grocer", key: SigningKeyPair.generate().publicKey)
        let day: UInt64 = 86_400_000
        func purchase(_ sequence: UInt64, member: MemberID, at days: UInt64, amount: UInt64) -> LogEntry {
            LogEntry(
                origin: storeA, sequence: sequence, timestamp: HLCTimestamp(milliseconds: days * day + 1, logical: 0),
                idempotencyKey: "1/\(sequence)",
                operation: .purchase(
                    PurchaseRecord(
                        member: member, lane: "1", receipt: "\(sequence)", amountMinor: amount, pointsEarned: 0,
                        pointsRedeemed: 0)), effects: [])
        }
        let other = MemberID(origin: storeA, serial: 2)
        _ = try ledger.merge(
            db, from: storeA,
            entries: [
                purchase(1, member: member, at: 100, amount: 1_000),  // previous period
                purchase(2, member: other, at: 101, amount: 1_000),  // previous period
                purchase(3, member: member, at: 110, amount: 3_000),
                purchase(4, member: member, at: 111, amount: 5_000),
            ])
        let figures = try ledger.partnerFigures(db, first: 110, last: 119)
        #expect(figures.count == 1)
        let grocer = try #require(figures.first)
        #expect(grocer.participants == 1 && grocer.purchases == 2 && grocer.averageCheckMinor == 4_000)
        #expect(grocer.frequencyPerMille == 2_000 && grocer.retentionPerMille == 500)
    }
}

@Suite struct ExpiryTests {
    @Test(arguments: HubBackend.available)
    func unspentOldPointsExpireOnlyAsFarAsTheHubHoldsTheirRights(backend: HubBackend) throws {
        let db = try openHub(backend)
        let ledger = HubLedger()
        _ = try ledger.merge(
            db, from: storeA,
            entries: [entry(storeA, 1), entry(storeA, 2, earned: 100), entry(storeA, 3, moveToHub: 60)])
        let first = try ledger.expire(db, cutoff: 1_000, cutoffDay: 1)
        #expect(first.count == 1 && first[0].expired == 60 && first[0].waiting == 40)
        #expect(try ledger.counter(db, member: member, account: .main).balance == 40)
        let again = try ledger.expire(db, cutoff: 1_000, cutoffDay: 1)
        #expect(again.first?.expired == 0 && again.first?.waiting == 40, "the store still holds the rest")
        _ = try ledger.merge(db, from: storeA, entries: [entry(storeA, 4, moveToHub: 100)])
        let last = try ledger.expire(db, cutoff: 1_000, cutoffDay: 1)
        #expect(last.first?.expired == 40 && last.first?.waiting == 0)
        #expect(try ledger.counter(db, member: member, account: .main).balance == 0)
        #expect(try ledger.expire(db, cutoff: 1_000, cutoffDay: 1).isEmpty, "nothing left to expire")
        // Expired points are nobody's debt in the clearing report, and no longer a liability.
        let clearing = try ledger.clearing(db, period: 0...UInt64.max)
        #expect(clearing.netted.isEmpty && clearing.liability.isEmpty)
    }

    @Test(arguments: HubBackend.available)
    func pointsEarnedAfterTheCutoffDoNotExpire(backend: HubBackend) throws {
        let db = try openHub(backend)
        let ledger = HubLedger()
        _ = try ledger.merge(
            db, from: storeA,
            entries: [entry(storeA, 1), entry(storeA, 2, earned: 100), entry(storeA, 3, moveToHub: 100)])
        #expect(try ledger.expire(db, cutoff: 0, cutoffDay: 0).isEmpty)
    }
}

@Suite struct HubSchemaUpgradeTests {
    @Test func aVersionOneHubDatabaseUpgradesAndKeepsItsData() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "hub-upgrade-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("hub.sqlite").path
        do {
            let old = try SQLiteConnection(path: path)
            try old.configureDurable()
            try HubLedger.migrator.migrate(old, upTo: 1)
            // Rows as version 1 wrote them.
            for (index, old) in [(old, entry(storeA, 1)), (old, entry(storeA, 2, earned: 100))].enumerated() {
                let (db, logged) = old
                try db.run(
                    "INSERT INTO entries(origin, seq, feed_seq, hlc, entry) VALUES(?, ?, ?, ?, ?)",
                    [
                        .int(Int(logged.origin.rawValue)), .uint(logged.sequence), .int(index + 1),
                        .uint(logged.timestamp.rawValue), .blob(logged.encoded),
                    ])
                if case .registerMember(let record) = logged.operation { try CounterSlots.insertMember(db, record) }
                try CounterSlots.apply(db, logged.effects)
            }
            old.close()
        }
        let db = try HubLedger.open(path: path)
        #expect(try db.userVersion == HubLedger.migrator.latestVersion)
        #expect(try HubLedger().member(db, card: "4600000000015")?.balance == 100)
        #expect(try HubLedger().createPromoCodes(db, points: 10, count: 1).count == 1, "the new promo table works")
        #expect(
            try db.scalar("SELECT COUNT(*) FROM entries WHERE member = ?", [.uint(member.rawValue)]) == 2,
            "history backfilled")
        #expect(try HubLedger().merge(db, from: storeA, entries: [entry(storeA, 3, earned: 20)]) == 3)
    }
}

@Suite struct ApiTokenTests {
    @Test(arguments: HubBackend.available)
    func tokensAreStoredHashedAndResolveToTheirRoleUntilRevoked(backend: HubBackend) throws {
        let db = try openHub(backend)
        let ledger = HubLedger()
        _ = try ledger.enroll(db, name: "grocer-1", partner: "grocer", key: SigningKeyPair.generate().publicKey)
        let operatorToken = try ledger.createToken(db, label: "ops", role: .coalitionOperator)
        let partnerToken = try ledger.createToken(db, label: "grocer-bi", role: .partner("grocer"))
        #expect(operatorToken.hasPrefix("lyt_") && operatorToken.count == 52)
        #expect(try ledger.role(db, token: operatorToken) == .coalitionOperator)
        #expect(try ledger.role(db, token: partnerToken) == .partner("grocer"))
        #expect(try ledger.role(db, token: "lyt_" + String(repeating: "0", count: 48)) == nil)
        #expect(try ledger.role(db, token: "") == nil)
        let stored = try db.query("SELECT hash FROM api_tokens").map { $0.blob(0) }
        #expect(stored.count == 2 && !stored.contains(Array(operatorToken.utf8)), "only hashes are stored")
        #expect(throws: HubError.self) { try ledger.createToken(db, label: "ops", role: .coalitionOperator) }
        #expect(throws: HubError.self) { try ledger.createToken(db, label: "x", role: .partner("nobody")) }
        #expect(throws: HubError.self) { try ledger.createToken(db, label: "has space", role: .coalitionOperator) }
        try ledger.revokeToken(db, label: "grocer-bi")
        #expect(try ledger.role(db, token: partnerToken) == nil)
        #expect(throws: HubError.self) { try ledger.revokeToken(db, label: "grocer-bi") }
        let revoked = Dictionary(uniqueKeysWithValues: try ledger.tokens(db).map { ($0.label, $0.revoked) })
        #expect(revoked == ["ops": false, "grocer-bi": true])
    }
}

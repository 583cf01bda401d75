import Foundation
import NodeKit
import SyncProtocol
import Testing

@testable import EdgeNode

private let card = "4600000000015"

private func openLedger(node: UInt32 = 1, policy: OfflinePolicy = OfflinePolicy(), upTo version: Int64? = nil) throws
    -> (EdgeLedger, SQLiteConnection)
{
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("checkout-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let db = try SQLiteConnection(path: directory.appendingPathComponent("edge.sqlite").path)
    try db.configureDurable()
    try EdgeSchema.migrator.migrate(db, upTo: version)
    var key = [UInt8](repeating: 7, count: 32)
    return (
        EdgeLedger(node: NodeID(node), rules: PartnerRules(), policy: policy, phoneKey: SecretBytes(consuming: &key)),
        db
    )
}

private func buy(_ amount: UInt64, redeem: UInt64 = 0, _ receipt: String) -> PurchaseRequest {
    PurchaseRequest(card: card, amountMinor: amount, redeemPoints: redeem, lane: "1", receipt: receipt)
}

private func refund(_ receipt: String, of original: String, at store: UInt32? = nil, amount: UInt64? = nil)
    -> RefundRequest
{
    RefundRequest(
        lane: "1", receipt: receipt, originalStore: store.map { NodeID($0) }, originalLane: "1",
        originalReceipt: original, amountMinor: amount)
}

/// A sale while the hub is unreachable: the store keeps the rights it earns.
private let unreachable = Connectivity.offline(since: 0, now: 0)

private func receipt(_ outcome: PurchaseOutcome) throws -> PurchaseReceipt {
    guard case .completed(let receipt) = outcome else { throw PosError.storage("not completed: \(outcome)") }
    return receipt
}

@Suite struct RefundTests {
    @Test func aFullRefundReversesTheEarnedPointsAndGivesBackTheRedeemedOnes() throws {
        let (ledger, db) = try openLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(200_000, "p1"), connectivity: unreachable)  // +100
        _ = try receipt(try ledger.purchase(db, buy(100_000, redeem: 40, "p2")))  // -40, +48
        let back = try ledger.refund(db, refund("r1", of: "p2"))
        #expect(back.amountMinor == 100_000 && back.pointsReversed == 48 && back.pointsReturned == 40)
        #expect(back.balance == 100 && back.refundableLeft == 0)
        #expect(throws: PosError.refundTooLarge(requested: 0, refundable: 0)) {
            _ = try ledger.refund(db, refund("r2", of: "p2"))
        }
    }

    @Test func partialRefundsAreProportionalAndSumExactlyToTheFullRefund() throws {
        let (ledger, db) = try openLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(200_000, "seed"), connectivity: unreachable)
        _ = try ledger.purchase(db, buy(100_000, redeem: 37, "p"))  // earned 5 % of 963.00 = 48
        let parts: [UInt64] = [33_333, 33_333, 33_334]
        var reversed: UInt64 = 0
        var returned: UInt64 = 0
        for (index, part) in parts.enumerated() {
            let back = try ledger.refund(db, refund("r\(index)", of: "p", amount: part))
            reversed += back.pointsReversed
            returned += back.pointsReturned
        }
        #expect(reversed == 48 && returned == 37)
        #expect(try ledger.identify(db, card: card, phone: nil).balance == 100)
    }

    @Test func aRefundOfPointsAlreadySpentBecomesAMemberDebt() throws {
        let (ledger, db) = try openLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(200_000, "p1"), connectivity: unreachable)  // +100
        _ = try ledger.purchase(db, buy(100_000, redeem: 100, "p2"))  // -100, +45 on 900.00 paid
        let debt = try ledger.refund(db, refund("r", of: "p1"))
        #expect(debt.pointsReversed == 100)
        #expect(debt.balance == -55, "points taken back after they were spent are a debt, never dropped")
        #expect(debt.json["memberDebt"] == 55)
    }

    @Test func aRefundAtAnotherStoreWorksOnceThePurchaseHasSynced() throws {
        let (storeA, dbA) = try openLedger(node: 1)
        let (storeB, dbB) = try openLedger(node: 2)
        _ = try storeA.register(dbA, card: card, phone: nil, referrer: nil)
        _ = try storeA.purchase(dbA, buy(200_000, "p1"))
        let early = try #require(throws: PosError.self) { _ = try storeB.refund(dbB, refund("r", of: "p1", at: 1)) }
        #expect(early.code == 1011 && early.message.contains("not known here yet"))
        let entries = try storeA.preparePush(dbA, after: 0, limit: 100)
        try storeB.applyFeed(
            dbB, entries.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 1), entry: $0.element) }, upTo: 3
        )
        let back = try storeB.refund(dbB, refund("r", of: "p1", at: 1, amount: 50_000))
        #expect(back.pointsReversed == 25 && back.refundableLeft == 150_000)
        // The refund syncs back to A, which then knows less remains refundable.
        let refundEntries = try storeB.preparePush(dbB, after: 0, limit: 100)
        try storeA.applyFeed(
            dbA, refundEntries.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 10), entry: $0.element) },
            upTo: 20)
        #expect(throws: PosError.refundTooLarge(requested: 200_000, refundable: 150_000)) {
            _ = try storeA.refund(dbA, refund("r-a", of: "p1", amount: 200_000))
        }
    }

    @Test func aRetriedRefundIsAnsweredFromTheLog() throws {
        let (ledger, db) = try openLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(200_000, "p1"))
        let first = try ledger.refund(db, refund("r", of: "p1", amount: 10_000))
        let again = try ledger.refund(db, refund("r", of: "p1", amount: 10_000))
        #expect(again.replayed && again.sequence == first.sequence && again.pointsReversed == first.pointsReversed)
        #expect(throws: PosError.receiptConflict("1/r")) {
            _ = try ledger.refund(db, refund("r", of: "p1", amount: 20_000))
        }
        #expect(throws: PosError.self) { _ = try ledger.refund(db, refund("x", of: "nope")) }
    }
}

@Suite struct OfflinePolicyTests {
    static var policy: OfflinePolicy {
        var policy = OfflinePolicy()
        policy.maxPointsPerRedemption = 30
        policy.maxPointsPerMember = 50
        policy.maxRedemptionsPerMember = 2
        policy.maxPointsPerStore = 1_000
        policy.maxRedemptionsPerStore = 10
        policy.maxOutageMilliseconds = 3_600_000
        return policy
    }

    @Test func offlineRedemptionBeyondRightsIsBoundedAndRecordedAsExposure() throws {
        let (ledger, db) = try openLedger(node: 2, policy: Self.policy)
        // The member's points were earned elsewhere: this store holds no rights.
        let member = MemberID(origin: NodeID(1), serial: 1)
        let stamp = HLCTimestamp(rawValue: 1)
        let entries = [
            LogEntry(
                origin: NodeID(1), sequence: 1, timestamp: stamp, idempotencyKey: "",
                operation: .registerMember(
                    MemberRecord(id: member, card: card, phoneHash: [], referrer: nil, registeredAt: stamp)),
                effects: []),
            LogEntry(
                origin: NodeID(1), sequence: 2, timestamp: stamp, idempotencyKey: "1/x",
                operation: .purchase(
                    PurchaseRecord(
                        member: member, lane: "1", receipt: "x", amountMinor: 200_000, pointsEarned: 100,
                        pointsRedeemed: 0)),
                effects: [SlotWrite(member: member, account: .main, slot: .earned(NodeID(1)), value: 100)]),
        ]
        try ledger.applyFeed(
            db, entries.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 1), entry: $0.element) }, upTo: 2)
        let offline = Connectivity.offline(since: 1_000, now: 2_000)
        let online = Connectivity.online(now: 2_000)
        #expect(
            try ledger.purchase(db, buy(100_000, redeem: 20, "o1"), connectivity: online)
                == .needsRights(member: member, shortfall: 20, redeemable: 0), "online, the hub is asked first")
        // 100.00 checks: at most 30 points each; 5 % of what is paid is earned here.
        let first = try receipt(try ledger.purchase(db, buy(10_000, redeem: 30, "o2"), connectivity: offline))
        #expect(first.pointsRedeemed == 30 && first.pointsEarned == 3 && first.balance == 73)
        #expect(throws: PosError.insufficientPoints(requested: 30, redeemable: 20, online: false)) {
            // 20 of the member's 50 uncovered points are left in this outage
            _ = try ledger.purchase(db, buy(10_000, redeem: 30, "o3"), connectivity: offline)
        }
        _ = try receipt(try ledger.purchase(db, buy(10_000, redeem: 20, "o4"), connectivity: offline))
        let third = try #require(throws: PosError.self) {
            _ = try ledger.purchase(db, buy(10_000, redeem: 5, "o5"), connectivity: offline)
        }
        #expect(third.code == 1003, "two uncovered redemptions per member per outage")
        let status = try ledger.status(db, connectivity: offline)
        #expect(status.exposure.storePoints == 50 && status.exposure.storeCount == 2)
        #expect(status.exposureTotalPoints == 50)
        // A new outage starts a new budget; an outage past its age allows nothing uncovered.
        let later = Connectivity.offline(since: 10_000, now: 10_000 + 3_600_001)
        #expect(throws: PosError.self) {
            _ = try ledger.purchase(db, buy(10_000, redeem: 5, "o6"), connectivity: later)
        }
        let fresh = Connectivity.offline(since: 10_000, now: 20_000)
        _ = try receipt(try ledger.purchase(db, buy(10_000, redeem: 5, "o7"), connectivity: fresh))
    }

    @Test func withTheDefaultPolicyNothingUncoveredIsEverRedeemed() throws {
        let (ledger, db) = try openLedger(node: 1)
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(200_000, "p"), connectivity: unreachable)
        let refused = try #require(throws: PosError.self) {
            _ = try ledger.purchase(db, buy(1_000_000, redeem: 101, "q"), connectivity: .offline(since: 0, now: 1))
        }
        #expect(refused.data?["redeemable"] == 100)
    }

    @Test func aQuoteShowsPointsAndTheMostRedeemableWithoutWriting() throws {
        let (ledger, db) = try openLedger(node: 1)
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(200_000, "p"))
        let quote = try ledger.quote(
            db, card: card, amountMinor: 50_000, redeemPoints: 10, connectivity: .online(now: 0))
        #expect(quote.paidMinor == 49_000 && quote.pointsEarned == 24 && quote.maxRedeemable == 100)
        let small = try ledger.quote(
            db, card: card, amountMinor: 10_000, redeemPoints: 0, connectivity: .online(now: 0))
        #expect(small.maxRedeemable == 30, "capped at 30 % of the check")
        #expect(try ledger.status(db).lastSequence == 2, "a quote writes nothing")
    }
}

@Suite struct ReplicaFileTests {
    /// A new replica is made with the small pages a purchase's random writes favour, and the
    /// clock's last reading is the last entry's stamp: appends write no clock row, and a wall
    /// clock stepped back (a restart with a wrong clock) still stamps later entries later.
    @Test func aNewReplicaUsesSmallPagesAndTheClockLivesInTheLog() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("replica-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let db = try EdgeLedger.open(path: directory.appendingPathComponent("edge.sqlite").path)
        #expect(try db.scalar("PRAGMA page_size") == Int64(EdgeLedger.pageSize))
        var key = [UInt8](repeating: 7, count: 32)
        var ledger = EdgeLedger(node: NodeID(1), rules: PartnerRules(), phoneKey: SecretBytes(consuming: &key))
        ledger.now = { 1_000_000_000 }
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(10_000, "c1"))
        let first = try #require(try db.scalar("SELECT hlc FROM log ORDER BY seq DESC LIMIT 1"))
        #expect(try db.scalar("SELECT COUNT(*) FROM meta WHERE key = 'hlc'") == 0, "no clock row written by appends")
        ledger.now = { 900_000_000 }
        _ = try ledger.purchase(db, buy(10_000, "c2"))
        let second = try #require(try db.scalar("SELECT hlc FROM log ORDER BY seq DESC LIMIT 1"))
        #expect(UInt64(bitPattern: second) > UInt64(bitPattern: first))
    }
}

@Suite struct SchemaUpgradeTests {
    /// A replica at every earlier schema version upgrades in place, keeps its data, and the
    /// new features work on the old data.
    @Test(arguments: Array(Int64(1)..<EdgeSchema.migrator.latestVersion))
    func anOlderReplicaUpgradesAndKeepsItsData(from version: Int64) throws {
        let (storeA, dbA) = try openLedger(node: 1)
        _ = try storeA.register(dbA, card: card, phone: nil, referrer: nil)
        _ = try storeA.purchase(dbA, buy(200_000, "p1"))
        let entries = try storeA.preparePush(dbA, after: 0, limit: 100)

        let (storeB, dbB) = try openLedger(node: 2, upTo: version)
        #expect(try dbB.userVersion == version)
        // Write the way that schema version did (version 1 kept no receipt key with remote entries).
        for (index, entry) in entries.enumerated() {
            if version == 1 {
                try dbB.run(
                    "INSERT INTO remote_log(origin, seq, feed_seq, entry) VALUES(?, ?, ?, ?)",
                    [.int(1), .uint(entry.sequence), .int(index + 1), .blob(entry.encoded)])
            } else {
                try dbB.run(
                    "INSERT INTO remote_log(origin, seq, feed_seq, entry, idem_key) VALUES(?, ?, ?, ?, ?)",
                    [
                        .int(1), .uint(entry.sequence), .int(index + 1), .blob(entry.encoded),
                        entry.idempotencyKey.isEmpty ? .null : .text(entry.idempotencyKey),
                    ])
            }
            if case .registerMember(let record) = entry.operation { try CounterSlots.insertMember(dbB, record) }
            try CounterSlots.apply(dbB, entry.effects)
        }
        try EdgeSchema.migrator.migrate(dbB)
        #expect(try dbB.userVersion == EdgeSchema.migrator.latestVersion)
        #expect(try storeB.status(dbB).members == 1, "the member count starts from the rows already held")
        _ = try storeB.register(
            dbB, card: CardNumber.issued(prefix: "46", serial: 99).digits, phone: nil, referrer: nil)
        #expect(try storeB.status(dbB).members == 2, "and counts the records written since")
        #expect(try storeB.identify(dbB, card: card, phone: nil).balance == 100)
        let back = try storeB.refund(dbB, refund("r", of: "p1", at: 1))
        #expect(back.pointsReversed == 100, "the upgrade backfilled the receipt keys of synced purchases")
    }
}

@Suite struct ScannerConfigurationTests {
    @Test func scannerSpecsParse() {
        #expect(
            ScannerConfiguration("1=tty:/dev/ttyACM0")
                == ScannerConfiguration(lane: "1", source: .serial("/dev/ttyACM0")))
        #expect(ScannerConfiguration("2=fifo:/run/l2") == ScannerConfiguration(lane: "2", source: .fifo("/run/l2")))
        #expect(
            ScannerConfiguration("3=tcp:127.0.0.1:7501")
                == ScannerConfiguration(lane: "3", source: .tcp(SocketAddress(host: "127.0.0.1", port: 7501))))
        #expect(ScannerConfiguration("=tty:/dev/x") == nil)
        #expect(ScannerConfiguration("1=usb:/dev/x") == nil)
        #expect(ScannerConfiguration("1=tty:relative") == nil)
    }
}

@Suite struct ConfigFileTests {
    @Test func theExampleWrittenByEdgeInitParses() throws {
        let config = try EdgeConfigFile.parse(EdgeConfigFile.example)
        #expect(config.node == 1 && config.pos == "127.0.0.1:7401" && config.posSocket == "/run/loyalty-edge/pos.sock")
        #expect(config.offline?.maxPointsPerRedemption == 0 && config.logFormat == "json")
    }

    @Test func scannersAndPolicyAreRead() throws {
        let config = try EdgeConfigFile.parse(
            """
            node = 7
            [offline]
            max_points_per_redemption = 200
            max_outage_minutes = 240
            [[scanner]]
            lane = "2"
            source = "fifo:/run/lane2"
            """)
        #expect(
            config.node == 7 && config.offline?.maxPointsPerRedemption == 200 && config.offline?.maxOutageMinutes == 240
        )
        #expect(config.scanner == [EdgeConfigFile.Scanner(lane: "2", source: "fifo:/run/lane2")])
    }

    @Test func mistakesNameTheLineOrTheKey() {
        let syntax = #expect(throws: EdgeConfigFile.Failure.self) {
            try EdgeConfigFile.parse("node = \n", name: "edge.toml")
        }
        #expect(syntax?.description.contains("edge.toml line 1") == true)
        let type = #expect(throws: EdgeConfigFile.Failure.self) { try EdgeConfigFile.parse("node = \"seven\"") }
        #expect(type?.description.contains("'node'") == true)
        let scanner = #expect(throws: EdgeConfigFile.Failure.self) {
            try EdgeConfigFile.parse("[[scanner]]\nlane = \"1\"\nsource = \"usb:/dev/x\"")
        }
        #expect(scanner?.description.contains("invalid source") == true)
    }
}

@Suite struct RulesTests {
    @Test func signedRulesAreStoredOnlyWhenNewerAndVerifiedOnLoad() throws {
        let (ledger, db) = try openLedger(node: 1)
        let hub = SigningKeyPair.generate()
        func document(_ version: UInt64, accrual: UInt64) -> RulesDocument {
            RulesDocument(
                version: version, issuedAtMilliseconds: 1, phoneKey: [UInt8](repeating: 5, count: 32),
                defaultPartner: PartnerRules(accrualBasisPoints: accrual))
        }
        let applied = try ledger.storeRules(
            db, signed: document(2, accrual: 100).signed(by: hub), hubKey: hub.publicKey)
        ledger.active.install(applied)
        #expect(ledger.rules.accrualBasisPoints == 100 && ledger.active.version == 2)
        #expect(throws: RulesDocument.Failure.self) {
            _ = try ledger.storeRules(db, signed: document(1, accrual: 900).signed(by: hub), hubKey: hub.publicKey)
        }
        #expect(throws: RulesDocument.Failure.badSignature) {
            _ = try ledger.storeRules(
                db, signed: document(3, accrual: 900).signed(by: .generate()), hubKey: hub.publicKey)
        }
        #expect(try EdgeLedger.loadRules(db, hubKey: hub.publicKey)?.version == 2)
        #expect(throws: RulesDocument.Failure.badSignature) {
            _ = try EdgeLedger.loadRules(db, hubKey: SigningKeyPair.generate().publicKey)
        }
    }

    @Test func phonesRegisteredUnderTheProvisionalKeyAreStillFoundAfterRulesArrive() throws {
        let (ledger, db) = try openLedger(node: 1)
        _ = try ledger.register(db, card: card, phone: "+4915112345678", referrer: nil)
        ledger.active.install(
            RulesDocument(version: 1, issuedAtMilliseconds: 1, phoneKey: [UInt8](repeating: 1, count: 32)))
        _ = try ledger.register(db, card: "4006381333931", phone: "+4915199999999", referrer: nil)
        #expect(try ledger.identify(db, card: nil, phone: "+4915112345678").card == card)
        #expect(try ledger.identify(db, card: nil, phone: "+4915199999999").card == "4006381333931")
    }
}

@Suite struct BonusTests {
    /// The brief's programme: 1,000 points for joining, 3,000 to each side of a referral.
    @Test(arguments: [
        (welcome: UInt64(1_000), referral: UInt64(3_000), newMember: Int64(4_000), referrer: Int64(4_000)),
        (welcome: 0, referral: 3_000, newMember: 3_000, referrer: 3_000),
        (welcome: 1_000, referral: 0, newMember: 1_000, referrer: 1_000),
        (welcome: 0, referral: 0, newMember: 0, referrer: 0),
    ])
    func registrationPaysTheWelcomeAndReferralBonuses(
        welcome: UInt64, referral: UInt64, newMember: Int64, referrer: Int64
    ) throws {
        let (ledger, db) = try openLedger(node: 1)
        ledger.active.install(
            RulesDocument(
                version: 1, issuedAtMilliseconds: 1, phoneKey: [UInt8](repeating: 1, count: 32), welcomeBonus: welcome,
                referralBonus: referral))
        let first = try ledger.register(db, card: card, phone: nil, referrer: nil)
        #expect(first.balance == Int64(welcome))
        let second = try ledger.register(db, card: "4006381333931", phone: nil, referrer: first.id.description)
        #expect(second.balance == newMember)
        #expect(try ledger.identify(db, card: card, phone: nil).balance == referrer)
        // Both bonuses are rights this store hands to the hub at the next push.
        let entries = try ledger.preparePush(db, after: 0, limit: 100)
        let moved = entries.compactMap { entry -> MemberID? in
            if case .rightsMove(let member, _, _, _) = entry.operation { return member }
            return nil
        }
        #expect(Set(moved).count == (newMember > 0 ? 2 : 0))
    }
}

@Suite struct TierTests {
    static let december1 = Campaign.day(year: 2026, month: 12, day: 1)
    /// Milliseconds of a Moscow wall-clock time relative to 1 December 2026 00:00 (UTC+3).
    static func moscow(dayOffset: Int64, hour: Int64) -> UInt64 {
        UInt64((december1 + dayOffset) * 86_400_000 + (hour - 3) * 3_600_000)
    }

    static var rules: RulesDocument {
        RulesDocument(
            version: 1, issuedAtMilliseconds: 0, phoneKey: [UInt8](repeating: 1, count: 32), timeZoneOffsetMinutes: 180,
            vipThresholdMinor: 1_000_000, vipMultiplierPercent: 200)
    }

    @Test func monthsAreCountedInTheProgrammesTimeZone() {
        #expect(RulesDocument.month(ofDay: 0) == 0)
        #expect(RulesDocument.month(ofDay: Self.december1) == (2026 - 1970) * 12 + 11)
        #expect(Self.rules.month(of: Self.moscow(dayOffset: 0, hour: 0)) == (2026 - 1970) * 12 + 11)
        #expect(Self.rules.month(of: Self.moscow(dayOffset: -1, hour: 23)) == (2026 - 1970) * 12 + 10)
    }

    /// November spend made offline at store B just before midnight (Moscow) reaches store A
    /// only in December: A's member is standard until it arrives, VIP once it has.
    @Test func offlinePurchasesAcrossTheMonthBoundarySyncedLateLiftTheTier() throws {
        var (storeA, dbA) = try openLedger(node: 1)
        var (storeB, dbB) = try openLedger(node: 2)
        storeA.active.install(Self.rules)
        storeB.active.install(Self.rules)
        storeA.now = { Self.moscow(dayOffset: -2, hour: 12) }
        _ = try storeA.register(dbA, card: card, phone: nil, referrer: nil)
        _ = try storeA.purchase(dbA, buy(500_000, "nov-a"))  // 5,000.00 on 29 November
        let registration = try storeA.preparePush(dbA, after: 0, limit: 100)
        try storeB.applyFeed(
            dbB, registration.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 1), entry: $0.element) },
            upTo: 10)
        // Store B, offline, 30 November 23:30 Moscow (20:30 UTC): 6,000.00.
        storeB.now = { Self.moscow(dayOffset: -1, hour: 23) + 30 * 60_000 }
        _ = try storeB.purchase(dbB, buy(600_000, "nov-b"), connectivity: .offline(since: 0, now: 1))

        storeA.now = { Self.moscow(dayOffset: 0, hour: 10) }
        let before = try receipt(try storeA.purchase(dbA, buy(200_000, "dec-1")))
        #expect(before.pointsEarned == 100, "A knows only 5,000.00 of November: standard")
        #expect(try storeA.identify(dbA, card: card, phone: nil).vip == false)

        let late = try storeB.preparePush(dbB, after: 0, limit: 100)
        try storeA.applyFeed(
            dbA, late.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 20), entry: $0.element) }, upTo: 40)
        let after = try receipt(try storeA.purchase(dbA, buy(200_000, "dec-2")))
        #expect(after.pointsEarned == 200, "11,000.00 in November: VIP earns double in December")
        #expect(try storeA.identify(dbA, card: card, phone: nil).vip)
    }

    @Test func aRefundLowersTheMonthsSpend() throws {
        var (ledger, db) = try openLedger(node: 1)
        ledger.active.install(Self.rules)
        ledger.now = { Self.moscow(dayOffset: -5, hour: 12) }
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(1_200_000, "big"))
        _ = try ledger.refund(db, refund("back", of: "big", amount: 300_000))
        #expect(try ledger.identify(db, card: card, phone: nil).monthSpend == 900_000)
        ledger.now = { Self.moscow(dayOffset: 1, hour: 12) }
        #expect(try ledger.identify(db, card: card, phone: nil).vip == false, "9,000.00 net is below the threshold")
    }
}

@Suite struct PromoRedemptionTests {
    @Test func promoPointsPayPartOfACheckWithRightsFromTheHubAndComeBackOnRefund() throws {
        let (ledger, db) = try openLedger(node: 1)
        let member = try ledger.register(db, card: card, phone: nil, referrer: nil).id
        _ = try ledger.purchase(db, buy(200_000, "p0"), connectivity: unreachable)  // 100 main points
        // The hub credited 500 promo points (its own earned slot): this store holds none of them.
        let credit = [SlotWrite(member: member, account: .promo, slot: .earned(.hub), value: 500)]
        try CounterSlots.apply(db, credit)
        var request = buy(100_000, redeem: 100, "p1")
        request.redeemPromoPoints = 200
        #expect(
            try ledger.purchase(db, request, connectivity: .online(now: 0))
                == .needsRights(member: member, account: .promo, shortfall: 200, redeemable: 0))
        #expect(throws: PosError.redeemAboveLimit(requested: 400, limit: 300)) {
            var tooMuch = buy(100_000, redeem: 200, "p2")
            tooMuch.redeemPromoPoints = 200
            _ = try ledger.purchase(db, tooMuch)
        }
        let grant = [SlotWrite(member: member, account: .promo, slot: .moved(.hub, NodeID(1)), value: 200)]
        let done = try receipt(try ledger.purchase(db, request, grant: grant))
        #expect(done.pointsRedeemed == 100 && done.promoRedeemed == 200 && done.paidMinor == 70_000)
        #expect(try ledger.identify(db, card: card, phone: nil).promoBalance == 300)
        let back = try ledger.refund(db, refund("r", of: "p1"))
        #expect(back.promoReturned == 200 && back.pointsReturned == 100)
        #expect(try ledger.identify(db, card: card, phone: nil).promoBalance == 500)
        #expect(
            try receipt(try ledger.purchase(db, request, grant: grant)).replayed, "a retry is answered from the log")
    }
}

@Suite struct PendingPointsTests {
    @Test func pointsStayPendingUntilTheReturnWindowClosesAndTheirRightsStayHere() throws {
        var (ledger, db) = try openLedger(node: 1)
        ledger.active.install(
            RulesDocument(
                version: 1, issuedAtMilliseconds: 0, phoneKey: [UInt8](repeating: 1, count: 32),
                defaultPartner: PartnerRules(pendingDays: 14)))
        let day: UInt64 = 86_400_000
        let start: UInt64 = 20_000 * day
        ledger.now = { start }
        let member = try ledger.register(db, card: card, phone: nil, referrer: nil).id
        _ = try ledger.purchase(db, buy(200_000, "p"))  // 100 points, pending for 14 days
        let fresh = try ledger.identify(db, card: card, phone: nil)
        #expect(fresh.balance == 100 && fresh.pending == 100 && fresh.redeemable == 0)
        #expect(
            try ledger.purchase(db, buy(100_000, redeem: 50, "buy-refund-keep"), connectivity: .online(now: start))
                == .needsRights(member: member, shortfall: 50, redeemable: 0), "pending points cannot pay")
        let early = try ledger.preparePush(db, after: 0, limit: 100)
        #expect(
            !early.contains { if case .rightsMove = $0.operation { true } else { false } }, "their rights stay here")

        ledger.now = { start + 15 * day }
        let later = try ledger.identify(db, card: card, phone: nil)
        #expect(later.pending == 0 && later.redeemable == 100)
        let released = try ledger.preparePush(db, after: UInt64(early.count), limit: 100)
        #expect(released.contains { if case .rightsMove(_, .main, .hub, 100) = $0.operation { true } else { false } })
    }

    @Test func aRefundInsideTheWindowTakesThePendingPointsBack() throws {
        var (ledger, db) = try openLedger(node: 1)
        ledger.active.install(
            RulesDocument(
                version: 1, issuedAtMilliseconds: 0, phoneKey: [UInt8](repeating: 1, count: 32),
                defaultPartner: PartnerRules(pendingDays: 14)))
        ledger.now = { 20_000 * 86_400_000 }
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, buy(200_000, "p"))
        _ = try ledger.refund(db, refund("r", of: "p"))
        let member = try ledger.identify(db, card: card, phone: nil)
        #expect(member.balance == 0 && member.pending == 0, "returned within the window: nothing was ever redeemable")
    }
}

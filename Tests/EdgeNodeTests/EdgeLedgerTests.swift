import Foundation
import NodeKit
import SyncProtocol
import Testing

@testable import EdgeNode

private let card = "4600000000015"
private let otherCard = "4006381333931"

private func makeLedger(node: UInt32 = 1, policy: OfflinePolicy = OfflinePolicy()) throws -> (
    EdgeLedger, SQLiteConnection
) {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edge-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let db = try EdgeLedger.open(path: directory.appendingPathComponent("edge.sqlite").path)
    var key = [UInt8](repeating: 7, count: 32)
    let ledger = EdgeLedger(
        node: NodeID(node), rules: PartnerRules(), policy: policy, phoneKey: SecretBytes(consuming: &key))
    return (ledger, db)
}

private func purchase(_ amount: UInt64, redeem: UInt64 = 0, receipt: String, card: String = card) -> PurchaseRequest {
    PurchaseRequest(card: card, amountMinor: amount, redeemPoints: redeem, lane: "1", receipt: receipt)
}

/// A sale while the hub is unreachable: the store keeps the rights it earns.
private let unreachable = Connectivity.offline(since: 0, now: 0)

private func completed(_ outcome: PurchaseOutcome) throws -> PurchaseReceipt {
    guard case .completed(let receipt) = outcome else {
        throw PosError.storage("expected a completed purchase, got \(outcome)")
    }
    return receipt
}

@Suite struct EdgeLedgerTests {
    @Test func registerThenIdentifyByCardAndByPhone() throws {
        let (ledger, db) = try makeLedger()
        let member = try ledger.register(db, card: card, phone: "+4915112345678", referrer: nil)
        #expect(try ledger.identify(db, card: card, phone: nil).id == member.id)
        #expect(try ledger.identify(db, card: nil, phone: "+4915112345678").id == member.id)
        // The phone number itself is never stored.
        let stored = try db.query("SELECT phone_hash FROM members").first?.blob(0) ?? []
        #expect(stored.count == 32 && !String(decoding: stored, as: UTF8.self).contains("4915112345678"))
    }

    @Test func badCardsAndPhonesAndDuplicatesGetClearErrors() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        #expect(throws: PosError.cardTaken(card)) { _ = try ledger.register(db, card: card, phone: nil, referrer: nil) }
        let badDigit = try #require(throws: PosError.self) {
            _ = try ledger.register(db, card: "4600000000017", phone: nil, referrer: nil)
        }
        #expect(badDigit.code == 1002)
        #expect(throws: PosError.self) {
            _ = try ledger.register(db, card: otherCard, phone: "0151 123", referrer: nil)
        }
        #expect(throws: PosError.unknownMember("card \(otherCard)")) {
            _ = try ledger.identify(db, card: otherCard, phone: nil)
        }
        let unknownReferrer = try #require(throws: PosError.self) {
            _ = try ledger.register(db, card: otherCard, phone: nil, referrer: "00000000deadbeef")
        }
        #expect(unknownReferrer.code == 1001)
    }

    @Test func aPurchaseEarnsPointsAndIsWrittenToTheLog() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        let receipt = try completed(try ledger.purchase(db, purchase(200_000, receipt: "r1")))
        #expect(receipt.pointsEarned == 100 && receipt.balance == 100 && !receipt.replayed)
        #expect(try ledger.status(db).lastSequence == 2)
    }

    @Test func aRetriedReceiptIsAnsweredFromTheLogAndNotAppliedTwice() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        let first = try completed(try ledger.purchase(db, purchase(200_000, receipt: "r1")))
        let again = try completed(try ledger.purchase(db, purchase(200_000, receipt: "r1")))
        #expect(again.replayed && again.sequence == first.sequence && again.balance == 100)
        #expect(throws: PosError.receiptConflict("1/r1")) {
            _ = try ledger.purchase(db, purchase(300_000, receipt: "r1"))
        }
    }

    @Test func aRetryWithAMergedRecordsCardIsAnsweredFromTheLog() throws {
        let (ledger, db) = try makeLedger()
        let survivor = try ledger.register(db, card: card, phone: nil, referrer: nil).id
        let merged = try ledger.register(db, card: otherCard, phone: nil, referrer: nil).id
        let before = try completed(try ledger.purchase(db, purchase(200_000, receipt: "m0", card: otherCard)))
        try ledger.markMerged(db, merged, into: survivor)
        let after = try completed(try ledger.purchase(db, purchase(100_000, receipt: "m1", card: otherCard)))
        #expect(after.member == survivor)
        // The POS retries both with the card it was shown: the same answers, nothing applied twice.
        let retriedBefore = try completed(try ledger.purchase(db, purchase(200_000, receipt: "m0", card: otherCard)))
        let retriedAfter = try completed(try ledger.purchase(db, purchase(100_000, receipt: "m1", card: otherCard)))
        #expect(retriedBefore.replayed && retriedBefore.sequence == before.sequence)
        #expect(retriedAfter.replayed && retriedAfter.sequence == after.sequence)
        #expect(retriedAfter.balance == after.balance, "the survivor's balance")
        #expect(try ledger.status(db).lastSequence == 4)
        let stranger = CardNumber.issued(prefix: "47", serial: 1).digits
        _ = try ledger.register(db, card: stranger, phone: nil, referrer: nil)
        #expect(throws: PosError.receiptConflict("1/m1"), "another person's card under the receipt") {
            _ = try ledger.purchase(db, purchase(100_000, receipt: "m1", card: stranger))
        }
        #expect(throws: PosError.receiptConflict("1/m1"), "a card number that does not parse") {
            _ = try ledger.purchase(db, purchase(100_000, receipt: "m1", card: "4600-not-a-card"))
        }
        #expect(try ledger.status(db).lastSequence == 5, "nothing refused was logged")
    }

    @Test func redemptionIsBoundedByTheRightsHeldHere() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, purchase(200_000, receipt: "r1"), connectivity: unreachable)
        let outcome = try ledger.purchase(db, purchase(100_000, redeem: 150, receipt: "r2"))
        #expect(outcome == .needsRights(member: MemberID(origin: NodeID(1), serial: 1), shortfall: 50, redeemable: 100))
        let receipt = try completed(try ledger.purchase(db, purchase(100_000, redeem: 100, receipt: "r3")))
        #expect(receipt.pointsRedeemed == 100 && receipt.paidMinor == 90_000 && receipt.pointsEarned == 45)
        #expect(receipt.balance == 45)
    }

    @Test func amountsOutOfRangeAndRedemptionsAboveTheCapAreRefused() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        #expect(throws: PosError.self) { _ = try ledger.purchase(db, purchase(0, receipt: "z")) }
        #expect(throws: PosError.self) { _ = try ledger.purchase(db, purchase(UInt64.max, receipt: "big")) }
        #expect(throws: PosError.redeemAboveLimit(requested: 301, limit: 300)) {
            _ = try ledger.purchase(db, purchase(100_000, redeem: 301, receipt: "cap"))
        }
        #expect(throws: PosError.unknownMember("card \(otherCard)")) {
            _ = try ledger.purchase(db, purchase(1_000, receipt: "u", card: otherCard))
        }
        #expect(try ledger.status(db).lastSequence == 1, "nothing refused was logged")
    }

    @Test func pushHandsHeldRightsToTheHubAndReturnsTheMissingEntries() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, purchase(200_000, receipt: "r1"), connectivity: unreachable)
        let entries = try ledger.preparePush(db, after: 0, limit: 100)
        #expect(entries.map(\.sequence) == [1, 2, 3])
        guard case .rightsMove(_, .main, .hub, 100) = entries[2].operation else {
            Issue.record("expected a rights move to the hub, got \(entries[2].operation)")
            return
        }
        #expect(try ledger.identify(db, card: card, phone: nil).redeemable == 0)
        #expect(try ledger.preparePush(db, after: 3, limit: 100).isEmpty, "no second release")
        #expect(try ledger.preparePush(db, after: 1, limit: 1).map(\.sequence) == [2], "batches are bounded")
    }

    @Test func anOnlineSaleHandsWhatItLeavesHereBackInItsOwnEntry() throws {
        let (ledger, db) = try makeLedger()
        let member = try ledger.register(db, card: card, phone: nil, referrer: nil).id
        let receipt = try completed(
            try ledger.purchase(db, purchase(200_000, receipt: "r1"), connectivity: .online(now: 0)))
        #expect(receipt.pointsEarned == 100 && receipt.balance == 100)
        #expect(try ledger.identify(db, card: card, phone: nil).redeemable == 0, "the hub holds the rights")
        let entries = try ledger.preparePush(db, after: 0, limit: 100)
        #expect(entries.map(\.sequence) == [1, 2], "no hand-back entry follows the sale")
        #expect(
            entries.last?.effects.last
                == SlotWrite(member: member, account: .main, slot: .moved(NodeID(1), .hub), value: 100))
    }

    @Test func aSaleThatHandsBackItsPointsLeavesOtherAccountsToThePush() throws {
        let (ledger, db) = try makeLedger()
        let member = try ledger.register(db, card: card, phone: nil, referrer: nil).id
        // Offline, a sale pays 50 promo points with a 200-point grant of the hub's: 150 stay here.
        try CounterSlots.apply(db, [SlotWrite(member: member, account: .promo, slot: .earned(.hub), value: 200)])
        let grant = SlotWrite(member: member, account: .promo, slot: .moved(.hub, NodeID(1)), value: 200)
        var request = purchase(100_000, receipt: "r1")
        request.redeemPromoPoints = 50
        _ = try completed(try ledger.purchase(db, request, grant: [grant], connectivity: unreachable))
        // Back online, a sale hands its main points back itself; the promo rights go at the push.
        _ = try completed(try ledger.purchase(db, purchase(100_000, receipt: "r2"), connectivity: .online(now: 0)))
        let moves = try ledger.preparePush(db, after: 0, limit: 100).compactMap { entry in
            if case .rightsMove(_, let account, .hub, let points) = entry.operation { return (account, points) }
            return nil
        }
        #expect(moves.count == 1 && moves.first?.0 == .promo && moves.first?.1 == 150)
        for account in Account.allCases {
            #expect(try ledger.counter(db, member: member, account: account).rights(NodeID(1)) == 0)
        }
    }

    @Test func aGrantNoSaleUsedGoesBackAtTheNextPush() throws {
        let (ledger, db) = try makeLedger()
        let member = try ledger.register(db, card: card, phone: nil, referrer: nil).id
        // The hub credited 200 promo points and granted 80 of them here for a sale that failed.
        let stamp = HLCTimestamp(rawValue: 1)
        let hubEntries = [
            LogEntry(
                origin: .hub, sequence: 1, timestamp: stamp, idempotencyKey: "",
                operation: .promoCredit(member: member, code: "7QK2M9XW3P", points: 200),
                effects: [SlotWrite(member: member, account: .promo, slot: .earned(.hub), value: 200)]),
            LogEntry(
                origin: .hub, sequence: 2, timestamp: stamp, idempotencyKey: "",
                operation: .rightsMove(member: member, account: .promo, to: NodeID(1), points: 80),
                effects: [SlotWrite(member: member, account: .promo, slot: .moved(.hub, NodeID(1)), value: 80)]),
        ]
        try ledger.applyFeed(
            db, hubEntries.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 1), entry: $0.element) },
            upTo: 2)
        let pushed = try ledger.preparePush(db, after: 0, limit: 100)
        #expect(
            pushed.last?.operation == .rightsMove(member: member, account: .promo, to: .hub, points: 80),
            "held here for no sale, the rights go back to the hub")
        #expect(try ledger.counter(db, member: member, account: .promo).rights(NodeID(1)) == 0)
    }

    @Test func aPushTakenFromTheScanIsWhatTheLogHolds() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, purchase(200_000, receipt: "r1"), connectivity: unreachable)
        func stored(after sequence: UInt64) throws -> [[UInt8]] {
            try db.query("SELECT entry FROM log WHERE seq > ? ORDER BY seq", [.uint(sequence)]).map { $0.blob(0) }
        }
        // The hub has everything up to the last scan: the push is the scan and the releases
        // appended after it, byte for byte what the log holds.
        #expect(try ledger.preparePush(db, after: 0, limit: 100).map(\.encoded) == stored(after: 0))
        _ = try ledger.purchase(db, purchase(50_000, receipt: "r2"), connectivity: unreachable)
        let bounded = try ledger.preparePush(db, after: 3, limit: 1)
        #expect(bounded.map(\.encoded) == Array(try stored(after: 3).prefix(1)), "still bounded")
        // The hub lacks entries an earlier scan covered (it was restored from a backup): the
        // push reads them back from the log.
        #expect(try ledger.preparePush(db, after: 1, limit: 100).map(\.encoded) == stored(after: 1))
        #expect(try stored(after: 1).count >= 4)
    }

    @Test func unsyncedEntriesAreThoseAfterTheHubsAcknowledgement() throws {
        let (ledger, db) = try makeLedger()
        #expect(try ledger.unsyncedEntries(db) == 0, "an empty log")
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        _ = try ledger.purchase(db, purchase(2_000, receipt: "u1"))
        _ = try ledger.purchase(db, purchase(3_000, receipt: "u2"))
        #expect(try ledger.unsyncedEntries(db) == 3)
        try ledger.acknowledge(db, upTo: 2)
        #expect(try ledger.unsyncedEntries(db) == 1)
        try ledger.acknowledge(db, upTo: 3)
        #expect(try ledger.unsyncedEntries(db) == 0)
    }

    @Test func feedEntriesApplyOnceAndAGapIsRefused() throws {
        let (storeA, dbA) = try makeLedger(node: 1)
        _ = try storeA.register(dbA, card: card, phone: nil, referrer: nil)
        _ = try storeA.purchase(dbA, purchase(200_000, receipt: "r1"))
        let entries = try storeA.preparePush(dbA, after: 0, limit: 100)
        let feed = entries.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 1), entry: $0.element) }

        let (storeB, dbB) = try makeLedger(node: 2)
        #expect(throws: EntryError.gap(origin: NodeID(1), expected: 1, got: 2)) {
            try storeB.applyFeed(dbB, Array(feed[1...]), upTo: 3)
        }
        try storeB.applyFeed(dbB, feed, upTo: 3)
        try storeB.applyFeed(dbB, feed, upTo: 3)
        let seen = try storeB.identify(dbB, card: card, phone: nil)
        #expect(seen.balance == 100 && seen.redeemable == 0)
        #expect(try storeB.status(dbB).feedWatermark == 3)
        // An empty pull moves the watermark on and never back; the clock is left alone.
        let clock = try storeB.lastClock(dbB)
        try storeB.applyFeed(dbB, [], upTo: 9)
        try storeB.applyFeed(dbB, [], upTo: 5)
        #expect(try storeB.status(dbB).feedWatermark == 9)
        #expect(try storeB.lastClock(dbB) == clock)
    }

    /// Acknowledgements and watermarks only rise, in one statement below Int64.max and by a
    /// read and a write above it.
    @Test func metaValuesOnlyRise() throws {
        let (store, db) = try makeLedger()
        try store.acknowledge(db, upTo: 7)
        try store.acknowledge(db, upTo: 3)
        #expect(try store.status(db).acknowledgedSequence == 7)
        for value in [UInt64(Int64.max) + 5, UInt64(Int64.max) + 2, 12] {
            try store.raiseMeta(db, .feedWatermark, to: value)
        }
        #expect(try store.status(db).feedWatermark == UInt64(Int64.max) + 5)
    }

    @Test func aFeedEntryWritingAnotherNodesSlotIsRefused() throws {
        let (ledger, db) = try makeLedger(node: 2)
        let member = MemberID(origin: NodeID(1), serial: 1)
        let forged = LogEntry(
            origin: NodeID(1), sequence: 1, timestamp: HLCTimestamp(rawValue: 1), idempotencyKey: "",
            operation: .rightsMove(member: member, account: .main, to: NodeID(1), points: 10),
            effects: [SlotWrite(member: member, account: .main, slot: .moved(.hub, NodeID(1)), value: 1_000)])
        #expect(throws: EntryError.foreignSlot(origin: NodeID(1), slotOwner: .hub)) {
            try ledger.applyFeed(db, [FeedEntry(feedSequence: 1, entry: forged)], upTo: 1)
        }
    }

    @Test func aGrantAppliedWithThePurchaseCoversTheShortfall() throws {
        let (ledger, db) = try makeLedger(node: 2)
        let (storeA, dbA) = try makeLedger(node: 1)
        _ = try storeA.register(dbA, card: card, phone: nil, referrer: nil)
        _ = try storeA.purchase(dbA, purchase(200_000, receipt: "r1"))
        let entries = try storeA.preparePush(dbA, after: 0, limit: 100)
        try ledger.applyFeed(
            db, entries.enumerated().map { FeedEntry(feedSequence: UInt64($0.offset + 1), entry: $0.element) }, upTo: 3)
        let member = MemberID(origin: NodeID(1), serial: 1)
        let grant = [SlotWrite(member: member, account: .main, slot: .moved(.hub, NodeID(2)), value: 40)]
        let receipt = try completed(try ledger.purchase(db, purchase(100_000, redeem: 40, receipt: "b1"), grant: grant))
        #expect(receipt.pointsRedeemed == 40 && receipt.balance == 108)
    }

    @Test func aRemoteStampFarInTheFutureIsReportedAndDoesNotDragTheClock() throws {
        let (ledger, db) = try makeLedger(node: 2)
        let member = MemberID(origin: NodeID(1), serial: 1)
        let future = HLCTimestamp(milliseconds: wallClockMilliseconds() + 3_600_000, logical: 0)
        let entry = LogEntry(
            origin: NodeID(1), sequence: 1, timestamp: future, idempotencyKey: "",
            operation: .registerMember(
                MemberRecord(id: member, card: card, phoneHash: [], referrer: nil, registeredAt: future)),
            effects: [])
        let refused = try ledger.applyFeed(db, [FeedEntry(feedSequence: 1, entry: entry)], upTo: 1)
        #expect(refused.count == 1)
        #expect(refused.first?.description.contains("ahead of ours") == true)
        #expect(try ledger.identify(db, card: card, phone: nil).id == member, "the entry itself is applied")
        _ = try ledger.register(db, card: otherCard, phone: nil, referrer: nil)
        let stamp = try db.query("SELECT hlc FROM log ORDER BY seq DESC LIMIT 1").first?.uint(0) ?? 0
        #expect(HLCTimestamp(rawValue: stamp) < future, "local stamps follow the local clock, not the remote one")
    }
}

@Suite struct MemberImportTests {
    static func records(node: UInt32, from: Int, count: Int) -> [MemberSnapshot] {
        (from..<from + count).map { index in
            MemberSnapshot(
                record: MemberRecord(
                    id: MemberID(origin: NodeID(node), serial: UInt32(index + 1)),
                    card: CardNumber.issued(prefix: "47", serial: index).digits, phoneHash: [], referrer: nil,
                    registeredAt: HLCTimestamp(milliseconds: 1_000, logical: 0)),
                slots: [])
        }
    }

    @Test func aLargeImportCountsItsMembersOnceAndKeepsCounting() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        // Another store's members, then this store's own, past the size that counts once.
        try db.transaction {
            try ledger.importMembers(db, Self.records(node: 2, from: 0, count: EdgeLedger.countOnceFrom + 10))
        }
        try db.transaction { try ledger.importMembers(db, Self.records(node: 1, from: 1_000, count: 3)) }
        #expect(try ledger.status(db).members == Int64(EdgeLedger.countOnceFrom + 14))
        // The trigger is back: a registration and a duplicate import still count right.
        _ = try ledger.register(db, card: otherCard, phone: nil, referrer: nil)
        try db.transaction {
            try ledger.importMembers(db, Self.records(node: 2, from: 0, count: EdgeLedger.countOnceFrom + 10))
        }
        #expect(try ledger.status(db).members == Int64(EdgeLedger.countOnceFrom + 15))
        #expect(
            try db.scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'members_counted'") == 1
        )
    }

    @Test func aFailedImportLeavesTheCountAndItsTriggerAsTheyWere() throws {
        let (ledger, db) = try makeLedger()
        _ = try ledger.register(db, card: card, phone: nil, referrer: nil)
        #expect(throws: PosError.self) {
            try db.transaction {
                try ledger.importMembers(db, Self.records(node: 2, from: 0, count: EdgeLedger.countOnceFrom))
                throw PosError.storage("the import failed half way")
            }
        }
        #expect(try ledger.status(db).members == 1)
        _ = try ledger.register(db, card: otherCard, phone: nil, referrer: nil)
        #expect(try ledger.status(db).members == 2)
    }
}

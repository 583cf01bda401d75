import NodeKit
import SyncProtocol

/// A refund as the POS asks for it: which purchase (store, lane, receipt) and how much.
public struct RefundRequest: Sendable, Equatable {
    public var lane: String
    public var receipt: String
    /// The store of the original purchase; nil means this store.
    public var originalStore: NodeID?
    public var originalLane: String
    public var originalReceipt: String
    /// Minor units to refund; nil refunds everything not yet refunded.
    public var amountMinor: UInt64?

    public init(
        lane: String, receipt: String, originalStore: NodeID? = nil, originalLane: String, originalReceipt: String,
        amountMinor: UInt64? = nil
    ) {
        self.lane = lane
        self.receipt = receipt
        self.originalStore = originalStore
        self.originalLane = originalLane
        self.originalReceipt = originalReceipt
        self.amountMinor = amountMinor
    }

    var idempotencyKey: String { "\(lane)/\(receipt)" }
    var originalKey: String { "\(originalLane)/\(originalReceipt)" }
}

/// What a refund did, for the receipt.
public struct RefundReceipt: Sendable, Equatable {
    public var member: MemberID
    public var sequence: UInt64
    public var amountMinor: UInt64
    public var pointsReversed: UInt64
    public var pointsReturned: UInt64
    public var promoReturned: UInt64 = 0
    public var balance: Int64
    public var refundableLeft: UInt64
    public var replayed: Bool

    var json: JSONValue {
        .object([
            "member": .string(member.description), "sequence": .int(Int64(sequence)),
            "amount": .int(Int64(amountMinor)),
            "pointsReversed": .int(Int64(pointsReversed)), "pointsReturned": .int(Int64(pointsReturned)),
            "promoReturned": .int(Int64(promoReturned)),
            "balance": .int(balance), "memberDebt": .int(balance < 0 ? -balance : 0),
            "refundableLeft": .int(Int64(refundableLeft)), "replayed": .bool(replayed),
        ])
    }
}

/// A quote: what a purchase would earn and how much could be redeemed, without writing anything.
public struct Quote: Sendable, Equatable {
    public var member: MemberID
    public var amountMinor: UInt64
    public var redeemPoints: UInt64
    public var paidMinor: UInt64
    public var pointsEarned: UInt64
    public var maxRedeemable: UInt64
    public var balance: Int64

    var json: JSONValue {
        .object([
            "member": .string(member.description), "amount": .int(Int64(amountMinor)),
            "redeem": .int(Int64(redeemPoints)), "paid": .int(Int64(paidMinor)),
            "pointsEarned": .int(Int64(pointsEarned)), "maxRedeemable": .int(Int64(maxRedeemable)),
            "balance": .int(balance),
        ])
    }
}

extension EdgeLedger {
    /// Prices a check: points earned for a given redemption, and the most that can be redeemed
    /// here now (online, the hub can add rights held elsewhere, up to the balance).
    public func quote(
        _ db: any SQLDatabase, card: String, amountMinor: UInt64, redeemPoints: UInt64, connectivity: Connectivity
    ) throws -> Quote {
        guard amountMinor > 0, amountMinor <= Self.maxAmountMinor else {
            throw PosError.invalidAmount("amount must be between 1 and \(Self.maxAmountMinor) minor units")
        }
        let member = try identify(db, card: card, phone: nil)
        let counter = try counter(db, member: member.id, account: .main)
        let cap = rules.maxRedeemablePoints(amountMinor: amountMinor)
        let (held, allowance) = try redeemableNow(db, counter, member: member.id, connectivity)
        let available = connectivity.online ? UInt64(max(counter.balance, 0)) : held + allowance
        let paid = rules.paidMinor(amountMinor: amountMinor, redeemedPoints: redeemPoints)
        return Quote(
            member: member.id, amountMinor: amountMinor, redeemPoints: redeemPoints, paidMinor: paid,
            pointsEarned: active.pointsEarned(
                paidMinor: paid, at: connectivity.nowMilliseconds, vip: isVIP(counter, at: connectivity.nowMilliseconds)
            ),
            maxRedeemable: min(cap, available),
            balance: counter.balance)
    }

    /// The purchase a refund refers to, from this store's log or from the synced logs of others.
    func originalPurchase(_ db: any SQLDatabase, store: NodeID, key: String) throws -> PurchaseRecord? {
        try originalPurchaseEntry(db, store: store, key: key)?.purchase
    }

    /// The purchase and when it was made (its log entry's hybrid-clock time).
    func originalPurchaseEntry(_ db: any SQLDatabase, store: NodeID, key: String) throws -> (
        purchase: PurchaseRecord, at: UInt64
    )? {
        let rows =
            store == node
            ? try db.query("SELECT entry FROM log WHERE idem_key = ?", [.text(key)])
            : try db.query(
                "SELECT entry FROM remote_log WHERE origin = ? AND idem_key = ?",
                [.int(Int(store.rawValue)), .text(key)])
        guard let row = rows.first else { return nil }
        let entry = try LogEntry(decoding: row.blob(0))
        guard case .purchase(let purchase) = entry.operation else { return nil }
        return (purchase, entry.timestamp.milliseconds)
    }

    func refundTotals(_ db: any SQLDatabase, store: NodeID, key: String) throws -> (
        refunded: UInt64, reversed: UInt64, returned: UInt64, returnedPromo: UInt64
    ) {
        guard
            let row = try db.query(
                """
                SELECT refunded_minor, reversed, returned, returned_promo FROM refund_totals
                WHERE original_store = ? AND original_key = ?
                """,
                [.int(Int(store.rawValue)), .text(key)]
            ).first
        else { return (0, 0, 0, 0) }
        return (row.uint(0), row.uint(1), row.uint(2), row.uint(3))
    }

    /// Adds a refund (ours or another store's) to the totals of its purchase.
    func recordRefund(_ db: any SQLDatabase, _ refund: RefundRecord) throws {
        try db.run(
            """
            INSERT INTO refund_totals(original_store, original_key, refunded_minor, reversed, returned, returned_promo)
            VALUES(?, ?, ?, ?, ?, ?)
            ON CONFLICT(original_store, original_key) DO UPDATE SET
                refunded_minor = refunded_minor + excluded.refunded_minor,
                reversed = reversed + excluded.reversed, returned = returned + excluded.returned,
                returned_promo = returned_promo + excluded.returned_promo
            """,
            [
                .int(Int(refund.originalStore.rawValue)), .text(refund.originalKey), .uint(refund.amountMinor),
                .uint(refund.pointsReversed), .uint(refund.pointsReturned), .uint(refund.promoReturned),
            ])
    }

    /// Refunds all or part of a purchase made here or (once synced) at another store: takes
    /// back the points it earned and gives back the points it redeemed, in proportion.
    /// Earned points already spent elsewhere become a member debt (a negative balance).
    public func refund(_ db: any SQLDatabase, _ request: RefundRequest) throws -> RefundReceipt {
        let store = request.originalStore ?? node
        if let row = try db.query("SELECT entry FROM log WHERE idem_key = ?", [.text(request.idempotencyKey)]).first {
            let entry = try LogEntry(decoding: row.blob(0))
            guard case .refund(let done) = entry.operation, done.originalStore == store,
                done.originalKey == request.originalKey,
                request.amountMinor == nil || request.amountMinor == done.amountMinor
            else { throw PosError.receiptConflict(request.idempotencyKey) }
            let counter = try counter(db, member: done.member, account: .main)
            let purchase = try originalPurchase(db, store: store, key: request.originalKey)
            let totals = try refundTotals(db, store: store, key: request.originalKey)
            return RefundReceipt(
                member: done.member, sequence: entry.sequence, amountMinor: done.amountMinor,
                pointsReversed: done.pointsReversed, pointsReturned: done.pointsReturned,
                promoReturned: done.promoReturned,
                balance: counter.balance,
                refundableLeft: (purchase?.amountMinor ?? totals.refunded) - totals.refunded, replayed: true)
        }
        guard let (purchase, boughtAt) = try originalPurchaseEntry(db, store: store, key: request.originalKey) else {
            throw PosError.unknownPurchase(store: store, key: request.originalKey, here: store == node)
        }
        let totals = try refundTotals(db, store: store, key: request.originalKey)
        let remaining = purchase.amountMinor - min(purchase.amountMinor, totals.refunded)
        let amount = request.amountMinor ?? remaining
        guard amount > 0, amount <= remaining else {
            throw PosError.refundTooLarge(requested: amount, refundable: remaining)
        }
        let refunded = totals.refunded + amount
        let reversed = mulDiv(purchase.pointsEarned, refunded, purchase.amountMinor) - totals.reversed
        let returned = mulDiv(purchase.pointsRedeemed, refunded, purchase.amountMinor) - totals.returned
        let returnedPromo = mulDiv(purchase.promoRedeemed, refunded, purchase.amountMinor) - totals.returnedPromo
        // A purchase of a record merged since into another of the same person: the points
        // (and the month's spend) are the survivor's now, so the refund is theirs.
        let member = try survivor(db, of: purchase.member)
        var counter = try counter(db, member: member, account: .main)
        var effects: [SlotWrite] = []
        if reversed > 0 {
            let (slot, value) = try counter.debit(at: node, reversed)
            effects.append(SlotWrite(member: member, account: .main, slot: slot, value: value))
        }
        if returned > 0 {
            let (slot, value) = try counter.earn(at: node, returned)
            effects.append(SlotWrite(member: member, account: .main, slot: slot, value: value))
        }
        if returnedPromo > 0 {
            var promo = try self.counter(db, member: member, account: .promo)
            let (slot, value) = try promo.earn(at: node, returnedPromo)
            effects.append(SlotWrite(member: member, account: .promo, slot: slot, value: value))
        }
        // The refund lowers the spend of the month the purchase counted in.
        let (spendSlot, spendValue) = try counter.addRefundedSpend(
            at: node, month: active.month(of: boughtAt), amount)
        effects.append(SlotWrite(member: member, account: .main, slot: spendSlot, value: spendValue))
        let record = RefundRecord(
            member: member, lane: request.lane, receipt: request.receipt, originalStore: store,
            originalKey: request.originalKey, amountMinor: amount, pointsReversed: reversed, pointsReturned: returned,
            promoReturned: returnedPromo)
        let entry = try append(
            db, key: request.idempotencyKey, member: member, operation: .refund(record), effects: effects)
        try recordRefund(db, record)
        return RefundReceipt(
            member: member, sequence: entry.sequence, amountMinor: amount, pointsReversed: reversed,
            pointsReturned: returned, promoReturned: returnedPromo, balance: counter.balance,
            refundableLeft: remaining - amount, replayed: false)
    }
}

import NodeKit
import SyncProtocol

/// What the POS sees of a member.
public struct MemberView: Sendable, Equatable {
    public var id: MemberID
    public var card: String
    public var balance: Int64
    public var promoBalance: Int64
    public var redeemable: UInt64
    /// Points earned here still inside the return window (counted in the balance, not redeemable).
    public var pending: UInt64 = 0
    /// The member's tier this month, and their net spend so far this month (minor units).
    public var vip: Bool = false
    public var monthSpend: UInt64 = 0

    var json: JSONValue {
        .object([
            "member": .string(id.description), "card": .string(card), "balance": .int(balance),
            "promoBalance": .int(promoBalance), "redeemable": .int(Int64(redeemable)),
            "tier": .string(vip ? "vip" : "standard"), "monthSpend": .int(Int64(monthSpend)),
            "pending": .int(Int64(pending)),
        ])
    }
}

/// A purchase as the POS asks for it.
public struct PurchaseRequest: Sendable, Equatable {
    public var card: String
    public var amountMinor: UInt64
    public var redeemPoints: UInt64
    public var lane: String
    public var receipt: String
    /// Points paid from the promo account, besides `redeemPoints` from the main account.
    public var redeemPromoPoints: UInt64 = 0

    public init(
        card: String, amountMinor: UInt64, redeemPoints: UInt64 = 0, lane: String, receipt: String,
        redeemPromoPoints: UInt64 = 0
    ) {
        self.card = card
        self.amountMinor = amountMinor
        self.redeemPoints = redeemPoints
        self.lane = lane
        self.receipt = receipt
        self.redeemPromoPoints = redeemPromoPoints
    }

    var idempotencyKey: String { "\(lane)/\(receipt)" }
}

/// The answer to a purchase: the receipt lines the POS prints.
public struct PurchaseReceipt: Sendable, Equatable {
    public var member: MemberID
    public var sequence: UInt64
    public var amountMinor: UInt64
    public var paidMinor: UInt64
    public var pointsEarned: UInt64
    public var pointsRedeemed: UInt64
    public var promoRedeemed: UInt64 = 0
    public var balance: Int64
    public var replayed: Bool

    var json: JSONValue {
        .object([
            "member": .string(member.description), "sequence": .int(Int64(sequence)),
            "amount": .int(Int64(amountMinor)), "paid": .int(Int64(paidMinor)),
            "pointsEarned": .int(Int64(pointsEarned)), "pointsRedeemed": .int(Int64(pointsRedeemed)),
            "promoRedeemed": .int(Int64(promoRedeemed)), "balance": .int(balance), "replayed": .bool(replayed),
        ])
    }
}

/// The outcome of a purchase attempt on the writer thread.
public enum PurchaseOutcome: Sendable, Equatable {
    case completed(PurchaseReceipt)
    /// The redemption needs `shortfall` more rights than this store holds.
    case needsRights(member: MemberID, account: Account = .main, shortfall: UInt64, redeemable: UInt64)
}

/// Counts for `node.status`.
public struct LedgerStatus: Sendable {
    /// Uncovered redemptions in the current outage (zero while online), and ever.
    public var exposure = ExposureUse()
    public var exposureTotalPoints: UInt64 = 0
    public var exposureTotalCount: UInt64 = 0
    public var lastSequence: UInt64
    public var acknowledgedSequence: UInt64
    public var feedWatermark: UInt64
    public var members: Int64
    /// The replica holds only its partner group's members (and those looked up), not all.
    public var partial = false
}

/// The store's replica: every read and write of the edge database, run on the writer
/// thread inside the writer's transaction. Pure functions of (config, database).
public struct EdgeLedger: Sendable {
    public let node: NodeID
    /// The rules in force (partner economics, offline policy, phone key); replaced when the
    /// hub publishes new ones.
    public let active: ActiveRules
    public var rules: PartnerRules { active.partnerRules }
    /// How far beyond the rights held here members may redeem while offline (default: not at all).
    public var policy: OfflinePolicy { active.policy }

    /// The wall clock (Unix milliseconds); tests and the simulator set their own.
    public var now: @Sendable () -> UInt64 = wallClockMilliseconds

    public init(node: NodeID, active: ActiveRules) {
        self.node = node
        self.active = active
    }

    /// Points this member earned here that are still inside this partner's return window:
    /// not redeemable yet, and their rights stay here until the window closes.
    func pendingPoints(_ db: any SQLDatabase, member: MemberID) throws -> UInt64 {
        let days = rules.pendingDays
        guard days > 0 else { return 0 }
        let start = now() &- days * 86_400_000
        var pending: Int64 = 0
        for row in try db.query(
            "SELECT entry FROM log WHERE member = ? AND hlc >= ?",
            [.uint(member.rawValue), .uint(HLCTimestamp(milliseconds: start, logical: 0).rawValue)])
        {
            switch try LogEntry(decoding: row.blob(0)).operation {
            case .purchase(let purchase): pending += Int64(clamping: purchase.pointsEarned)
            case .refund(let refund): pending -= Int64(clamping: refund.pointsReversed)
            default: break
            }
        }
        return UInt64(max(0, pending))
    }

    /// Whether a member is VIP in the month of `at` (by their net spend the month before).
    func isVIP(_ counter: EscrowCounter, at milliseconds: UInt64) -> Bool {
        let month = active.month(of: milliseconds)
        return month > 0 && active.isVIP(lastMonthSpend: counter.monthlySpend(month: month - 1))
    }

    /// A ledger with fixed rules (tests, tools).
    public init(
        node: NodeID, rules: PartnerRules, policy: OfflinePolicy = OfflinePolicy(), phoneKey: SecretBytes,
        placementDays: UInt64 = 0
    ) {
        self.init(
            node: node,
            active: ActiveRules(
                partner: nil, rules: rules, policy: policy, provisionalPhoneKey: phoneKey, placementDays: placementDays)
        )
    }

    public static let maxAmountMinor: UInt64 = 1_000_000_000_000

    // MARK: Meta values

    enum MetaKey: String {
        case hlc, feedWatermark = "feed_watermark", acknowledged = "hub_acked", releaseScan = "release_scan"
        case memberSerial = "member_serial"
        /// Member records held (schema 7 keeps it with triggers on `members`).
        case members
        /// 1 once this replica has applied a partner-group feed: it holds only some members,
        /// so a whole feed later (the rules turned scoping off) skips numbers of its origins.
        case sparse
    }

    /// This store's last log entry: its sequence number and stamp (zeros before the first).
    func logTail(_ db: any SQLDatabase) throws -> (sequence: UInt64, stamp: HLCTimestamp) {
        let row = try db.query("SELECT seq, hlc FROM log ORDER BY seq DESC LIMIT 1").first
        return (row?.uint(0) ?? 0, HLCTimestamp(rawValue: row?.uint(1) ?? 0))
    }

    /// The clock's last reading: the later of this store's last entry (its stamp is in the
    /// log, so an append writes no clock row) and the last stamp observed in other nodes'
    /// entries (meta `hlc`). `ownLast` saves reading the log tail when the caller has it.
    func lastClock(_ db: any SQLDatabase, ownLast: HLCTimestamp? = nil) throws -> HLCTimestamp {
        max(try ownLast ?? logTail(db).stamp, HLCTimestamp(rawValue: try meta(db, .hlc)))
    }

    func meta(_ db: any SQLDatabase, _ key: MetaKey) throws -> UInt64 {
        UInt64(bitPattern: try db.scalar("SELECT value FROM meta WHERE key = ?", [.text(key.rawValue)]) ?? 0)
    }

    func setMeta(_ db: any SQLDatabase, _ key: MetaKey, _ value: UInt64) throws {
        try db.run(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [.text(key.rawValue), .uint(value)])
    }

    /// Raises a meta value to `value` when it is lower, in one statement. Values are stored
    /// as the bit patterns of signed integers: a stored negative one is above Int64.max, so
    /// above any `value` this statement writes; a `value` above Int64.max takes a read and a
    /// write.
    func raiseMeta(_ db: any SQLDatabase, _ key: MetaKey, to value: UInt64) throws {
        guard value <= UInt64(Int64.max) else {
            if value > (try meta(db, key)) { try setMeta(db, key, value) }
            return
        }
        try db.run(
            """
            INSERT INTO meta(key, value) VALUES(?, ?)
            ON CONFLICT(key) DO UPDATE SET value = excluded.value
            WHERE meta.value >= 0 AND excluded.value > meta.value
            """, [.text(key.rawValue), .uint(value)])
    }

    // MARK: Reading

    func counter(_ db: any SQLDatabase, member: MemberID, account: Account) throws -> EscrowCounter {
        try CounterSlots.load(db, member: member, account: account)
    }

    func view(_ db: any SQLDatabase, member: MemberID, card: String) throws -> MemberView {
        let main = try counter(db, member: member, account: .main)
        let promo = try counter(db, member: member, account: .promo)
        let at = now()
        let pending = try pendingPoints(db, member: member)
        return MemberView(
            id: member, card: card, balance: main.balance, promoBalance: promo.balance,
            redeemable: main.redeemable(at: node) - min(main.redeemable(at: node), pending), pending: pending,
            vip: isVIP(main, at: at),
            monthSpend: main.monthlySpend(month: active.month(of: at)))
    }

    /// Finds a member by card number or phone number.
    public func identify(_ db: any SQLDatabase, card: String?, phone: String?) throws -> MemberView {
        if let card {
            let number: CardNumber
            do { number = try CardNumber(card) } catch { throw PosError.invalidCard(error.description) }
            guard
                let row = try db.query(
                    "SELECT COALESCE(merged_into, id) FROM members WHERE card = ?", [.text(number.digits)]
                ).first
            else {
                throw PosError.unknownMember("card \(number.digits)")
            }
            return try view(db, member: MemberID(rawValue: row.uint(0)), card: number.digits)
        }
        if let phone {
            for hash in try phoneHashes(phone) {
                if let row = try db.query(
                    """
                    SELECT COALESCE(merged_into, id), card FROM members WHERE phone_hash = ?
                    ORDER BY merged_into IS NOT NULL, id LIMIT 1
                    """, [.blob(hash)]
                ).first {
                    return try view(db, member: MemberID(rawValue: row.uint(0)), card: row.text(1))
                }
            }
            throw PosError.unknownMember("this phone number")
        }
        throw PosError.invalidParams("give a card or a phone")
    }

    /// The member with this card (one indexed lookup; no balances).
    func memberID(_ db: any SQLDatabase, card: String) throws -> (id: MemberID, card: String) {
        let number: CardNumber
        do { number = try CardNumber(card) } catch { throw PosError.invalidCard(error.description) }
        guard
            let id = try db.scalar(
                "SELECT COALESCE(merged_into, id) FROM members WHERE card = ?", [.text(number.digits)])
        else {
            throw PosError.unknownMember("card \(number.digits)")
        }
        return (MemberID(rawValue: UInt64(bitPattern: id)), number.digits)
    }

    /// Keyed BLAKE2b of a normalised E.164 number: lookups work, the number is never stored.
    func phoneHash(_ phone: String) throws -> [UInt8] {
        try phoneHashes(phone)[0]
    }

    /// The number's hash under every key a stored hash may use, the current key first.
    func phoneHashes(_ phone: String) throws -> [[UInt8]] {
        guard let number = PhoneNumber(phone) else { throw PosError.invalidParams(PhoneNumber.formHint) }
        return active.phoneKeys.map { number.hash(key: $0) }
    }

    // MARK: Writing

    /// Appends an entry to this store's log and applies its effects, in the caller's transaction.
    func append(_ db: any SQLDatabase, key: String?, member: MemberID?, operation: Operation, effects: [SlotWrite])
        throws
        -> LogEntry
    {
        let tail = try logTail(db)
        let sequence = tail.sequence + 1
        var clock = HybridLogicalClock(last: try lastClock(db, ownLast: tail.stamp))
        let stamp = try clock.now(wall: now())
        let entry = LogEntry(
            origin: node, sequence: sequence, timestamp: stamp, idempotencyKey: key ?? "", operation: operation,
            effects: effects)
        try db.run(
            "INSERT INTO log(seq, hlc, idem_key, member, entry) VALUES(?, ?, ?, ?, ?)",
            [
                .uint(sequence), .uint(stamp.rawValue), key.map { .text($0) } ?? .null,
                member.map { .uint($0.rawValue) } ?? .null, .blob(entry.encoded),
            ])
        try applyEffects(db, entry.effects)
        return entry
    }

    func applyEffects(_ db: any SQLDatabase, _ effects: [SlotWrite]) throws {
        try CounterSlots.apply(db, effects)
    }

    func applyMember(_ db: any SQLDatabase, _ record: MemberRecord) throws {
        try CounterSlots.insertMember(db, record)
    }

    /// Registers a new member at this store.
    public func register(_ db: any SQLDatabase, card: String, phone: String?, referrer: String?) throws -> MemberView {
        let number: CardNumber
        do { number = try CardNumber(card) } catch { throw PosError.invalidCard(error.description) }
        if try db.scalar("SELECT 1 FROM members WHERE card = ?", [.text(number.digits)]) != nil {
            throw PosError.cardTaken(number.digits)
        }
        let hash = try phone.map(phoneHash) ?? []
        var referrerID: MemberID?
        if let referrer {
            guard let id = MemberID(referrer),
                try db.scalar("SELECT 1 FROM members WHERE id = ?", [.uint(id.rawValue)]) != nil
            else { throw PosError.unknownMember("id \(referrer) (referrer)") }
            referrerID = id
        }
        let serial = try meta(db, .memberSerial) + 1
        guard serial <= UInt64(UInt32.max) else { throw PosError.storage("member serials exhausted at this store") }
        try setMeta(db, .memberSerial, serial)
        let id = MemberID(origin: node, serial: UInt32(serial))
        let stamp = try lastClock(db)
        let record = MemberRecord(
            id: id, card: number.digits, phoneHash: hash, referrer: referrerID, registeredAt: stamp)
        // Bonuses are points earned here, written with the registration itself.
        let bonuses = active.bonuses
        var effects: [SlotWrite] = []
        let ownBonus = bonuses.welcome + (referrerID == nil ? 0 : bonuses.referral)
        if ownBonus > 0 {
            var counter = EscrowCounter()
            let (slot, value) = try counter.earn(at: node, ownBonus)
            effects.append(SlotWrite(member: id, account: .main, slot: slot, value: value))
        }
        if let referrerID, bonuses.referral > 0 {
            var counter = try counter(db, member: referrerID, account: .main)
            let (slot, value) = try counter.earn(at: node, bonuses.referral)
            effects.append(SlotWrite(member: referrerID, account: .main, slot: slot, value: value))
        }
        _ = try append(
            db, key: "register/\(number.digits)", member: id, operation: .registerMember(record), effects: effects)
        try applyMember(db, record)
        return try view(db, member: id, card: number.digits)
    }

    /// Uncovered redemptions during the current outage, for this member and the whole store.
    func exposureUse(_ db: any SQLDatabase, member: MemberID, outageStart: UInt64) throws -> ExposureUse {
        let rows = try db.query(
            """
            SELECT COALESCE(SUM(points), 0), COUNT(*), COALESCE(SUM(CASE WHEN member = ? THEN points END), 0),
                   COUNT(CASE WHEN member = ? THEN 1 END)
            FROM exposure WHERE outage_started_ms = ?
            """, [.uint(member.rawValue), .uint(member.rawValue), .uint(outageStart)])
        guard let row = rows.first else { return ExposureUse() }
        return ExposureUse(
            memberPoints: row.uint(2), memberCount: row.uint(3), storePoints: row.uint(0), storeCount: row.uint(1))
    }

    /// How many points this member can redeem here now: the rights held here, plus what the
    /// offline policy still allows when the hub is unreachable.
    func redeemableNow(_ db: any SQLDatabase, _ counter: EscrowCounter, member: MemberID, _ connectivity: Connectivity)
        throws -> (held: UInt64, allowance: UInt64)
    {
        let held =
            counter.redeemable(at: node) - min(counter.redeemable(at: node), try pendingPoints(db, member: member))
        guard !connectivity.online else { return (held, 0) }
        let used = try exposureUse(db, member: member, outageStart: connectivity.outageStartedMilliseconds)
        return (held, policy.allowance(used: used, connectivity: connectivity))
    }

    /// Records a purchase that earns points and optionally redeems some. `grant` is a rights
    /// grant just received from the hub, applied in the same transaction.
    public func purchase(
        _ db: any SQLDatabase, _ request: PurchaseRequest, grant: [SlotWrite] = [],
        connectivity: Connectivity = .online(now: 0)
    ) throws -> PurchaseOutcome {
        try applyEffects(db, grant)
        let key = request.idempotencyKey
        if let row = try db.query("SELECT entry FROM log WHERE idem_key = ?", [.text(key)]).first {
            return .completed(try replay(db, entry: LogEntry(decoding: row.blob(0)), request: request))
        }
        guard request.amountMinor > 0, request.amountMinor <= Self.maxAmountMinor else {
            throw PosError.invalidAmount("amount must be between 1 and \(Self.maxAmountMinor) minor units")
        }
        let limit = rules.maxRedeemablePoints(amountMinor: request.amountMinor)
        let (totalRedeemed, tooMany) = request.redeemPoints.addingReportingOverflow(request.redeemPromoPoints)
        guard !tooMany, totalRedeemed <= limit else {
            throw PosError.redeemAboveLimit(requested: tooMany ? .max : totalRedeemed, limit: limit)
        }
        let member = try memberID(db, card: request.card)
        var counter = try counter(db, member: member.id, account: .main)
        var effects: [SlotWrite] = []
        var promo: EscrowCounter?
        if request.redeemPromoPoints > 0 {
            // Promo points are credited by the hub, which holds their rights until it grants
            // them: online the hub is asked; offline only rights already held here count.
            var promoCounter = try self.counter(db, member: member.id, account: .promo)
            let held = promoCounter.redeemable(at: node)
            if request.redeemPromoPoints > held {
                if connectivity.online {
                    return .needsRights(
                        member: member.id, account: .promo, shortfall: request.redeemPromoPoints - held,
                        redeemable: held)
                }
                throw PosError.insufficientPoints(requested: request.redeemPromoPoints, redeemable: held, online: false)
            }
            let (slot, value) = try promoCounter.redeem(at: node, request.redeemPromoPoints)
            effects.append(SlotWrite(member: member.id, account: .promo, slot: slot, value: value))
            promo = promoCounter
        }
        var uncovered: UInt64 = 0
        if request.redeemPoints > 0 {
            let (held, allowance) = try redeemableNow(db, counter, member: member.id, connectivity)
            if request.redeemPoints > held {
                if connectivity.online {
                    return .needsRights(member: member.id, shortfall: request.redeemPoints - held, redeemable: held)
                }
                guard request.redeemPoints <= held + allowance else {
                    throw PosError.insufficientPoints(
                        requested: request.redeemPoints, redeemable: held + allowance, online: false)
                }
                uncovered = request.redeemPoints - held
            }
            // Rights already below zero from earlier uncovered redemptions in this outage are
            // part of what the policy bounds (through the exposure table), not of this check.
            let deficit = UInt64(max(0, -counter.rights(node)))
            let (slot, value) = try counter.redeem(at: node, request.redeemPoints, allowance: uncovered + deficit)
            effects.append(SlotWrite(member: member.id, account: .main, slot: slot, value: value))
        }
        let paid = rules.paidMinor(amountMinor: request.amountMinor, redeemedPoints: totalRedeemed)
        let at = now()
        let earned = active.pointsEarned(paidMinor: paid, at: at, vip: isVIP(counter, at: at))
        if earned > 0 {
            let (slot, value) = try counter.earn(at: node, earned)
            effects.append(SlotWrite(member: member.id, account: .main, slot: slot, value: value))
        }
        // Monthly spend (for tiers) counts the whole check, whatever paid it.
        let (spendSlot, spendValue) = try counter.addSpend(
            at: node, month: active.month(of: at), request.amountMinor)
        effects.append(SlotWrite(member: member.id, account: .main, slot: spendSlot, value: spendValue))
        if connectivity.online, !releasesWithTime {
            // Online, with no rule that keeps rights here, what the sale leaves here goes back
            // to the hub in the sale's own entry rather than in a hand-back at the next push.
            effects += try handBack(&counter, member: member.id, account: .main)
            if var promoCounter = promo {
                effects += try handBack(&promoCounter, member: member.id, account: .promo)
            }
        }
        let record = PurchaseRecord(
            member: member.id, lane: request.lane, receipt: request.receipt, amountMinor: request.amountMinor,
            pointsEarned: earned, pointsRedeemed: request.redeemPoints, uncoveredPoints: uncovered,
            promoRedeemed: request.redeemPromoPoints)
        let entry = try append(db, key: key, member: member.id, operation: .purchase(record), effects: effects)
        try recordVisit(db, member: member.id, store: node, at: entry.timestamp)
        if uncovered > 0 {
            try db.run(
                "INSERT INTO exposure(seq, member, points, outage_started_ms, at_ms) VALUES(?, ?, ?, ?, ?)",
                [
                    .uint(entry.sequence), .uint(member.id.rawValue), .uint(uncovered),
                    .uint(connectivity.outageStartedMilliseconds), .uint(connectivity.nowMilliseconds),
                ])
        }
        return .completed(
            PurchaseReceipt(
                member: member.id, sequence: entry.sequence, amountMinor: request.amountMinor, paidMinor: paid,
                pointsEarned: earned, pointsRedeemed: request.redeemPoints, promoRedeemed: request.redeemPromoPoints,
                balance: counter.balance, replayed: false))
    }

    /// Moves every right this store holds in `counter` to the hub: the write that records
    /// it, or none when nothing is held here.
    private func handBack(_ counter: inout EscrowCounter, member: MemberID, account: Account) throws -> [SlotWrite] {
        let held = counter.rights(node)
        guard held > 0 else { return [] }
        let (slot, value) = try counter.move(by: node, to: .hub, UInt64(held))
        return [SlotWrite(member: member, account: account, slot: slot, value: value)]
    }

    /// A retried purchase: the original answer, with today's balance; a different purchase
    /// under the same receipt id is refused. The card matches when its record is the one the
    /// purchase was on, or was merged into it: a second card of a merged person names the
    /// survivor, before or after the store heard of the merge.
    private func replay(_ db: any SQLDatabase, entry: LogEntry, request: PurchaseRequest) throws -> PurchaseReceipt {
        guard case .purchase(let original) = entry.operation, original.amountMinor == request.amountMinor,
            original.pointsRedeemed == request.redeemPoints, original.promoRedeemed == request.redeemPromoPoints,
            let digits = try? CardNumber(request.card).digits,
            let record = try db.query("SELECT id, merged_into FROM members WHERE card = ?", [.text(digits)]).first,
            record.uint(0) == original.member.rawValue
                || (!record.isNull(1) && record.uint(1) == original.member.rawValue)
        else { throw PosError.receiptConflict(request.idempotencyKey) }
        let counter = try counter(db, member: survivor(db, of: original.member), account: .main)
        return PurchaseReceipt(
            member: original.member, sequence: entry.sequence, amountMinor: original.amountMinor,
            paidMinor: rules.paidMinor(
                amountMinor: original.amountMinor, redeemedPoints: original.pointsRedeemed + original.promoRedeemed),
            pointsEarned: original.pointsEarned, pointsRedeemed: original.pointsRedeemed,
            promoRedeemed: original.promoRedeemed, balance: counter.balance, replayed: true)
    }

    // MARK: Sync

    /// Rights placement: records a purchase by `member` at `store` when it is the member's
    /// latest this replica knows of.
    func recordVisit(_ db: any SQLDatabase, member: MemberID, store: NodeID, at stamp: HLCTimestamp) throws {
        guard active.placementDays > 0 else { return }
        try CounterSlots.recordVisit(db, member: member, store: store, hlc: stamp.rawValue)
    }

    /// Whether rights held here go back to the hub with time alone (rights placement ages
    /// out, a return window closes): then every sync tick runs the release scan.
    public var releasesWithTime: Bool { active.placementDays > 0 || rules.pendingDays > 0 }

    /// The oldest purchase time a placement still counts (nil: placement is off).
    func placementCutoff() -> UInt64? {
        let days = active.placementDays
        guard days > 0 else { return nil }
        return HLCTimestamp(milliseconds: now() &- days * 86_400_000, logical: 0).rawValue
    }

    /// Hands the rights this store holds for recently served members back to the hub, so
    /// that any store can redeem them while online; then returns the entries the hub lacks.
    /// With rights placement on, the rights of members whose latest purchase was here, within
    /// the placement days, stay here for offline redemption; they go back when the member
    /// shops elsewhere or the placement ages out.
    public func preparePush(_ db: any SQLDatabase, after hubHigh: UInt64, limit: Int) throws -> [LogEntry] {
        let scanned = try meta(db, .releaseScan)
        // Every member account whose counter an entry since the last scan changed here (a
        // referral changes the referrer's too). Where no rule keeps rights here, an entry
        // that moves an account's rights to the hub (an online sale hands back what it
        // leaves) settles that account as of itself.
        var accounts = Set<MemberAccount>()
        let settles = !releasesWithTime
        // The log only grows, so its tail is the last entry scanned, or `scanned` itself.
        var tail = scanned
        for row in try db.query("SELECT seq, entry FROM log WHERE seq > ?", [.uint(scanned)]) {
            tail = max(tail, row.uint(0))
            let effects = try LogEntry(decoding: row.blob(1)).effects
            for effect in effects { accounts.insert(MemberAccount(effect.member, effect.account)) }
            guard settles else { continue }
            for effect in effects where effect.slot == .moved(node, .hub) {
                accounts.remove(MemberAccount(effect.member, effect.account))
            }
        }
        // Members queued for release, or whose placement aged out: every account is looked at.
        var everyAccount = Set<MemberID>()
        let cutoff = placementCutoff()
        let queued = try db.query("SELECT member FROM release_queue")
        if !queued.isEmpty {
            for row in queued { everyAccount.insert(MemberID(rawValue: row.uint(0))) }
            try db.run("DELETE FROM release_queue")
        }
        if let cutoff {
            // Placements aged out: a bounded batch per push.
            for row in try db.query(
                "SELECT member FROM visits WHERE store = ? AND hlc < ? LIMIT 1000",
                [.int(Int(node.rawValue)), .uint(cutoff)])
            {
                everyAccount.insert(MemberID(rawValue: row.uint(0)))
                try db.run("DELETE FROM visits WHERE member = ?", [row.values[0]])
            }
        }
        for member in everyAccount.union(accounts.map(\.member)).sorted() {
            if let cutoff,
                let visit = try db.query("SELECT store, hlc FROM visits WHERE member = ?", [.uint(member.rawValue)])
                    .first,
                visit.int(0) == Int64(node.rawValue), visit.uint(1) >= cutoff,
                try survivor(db, of: member) == member
            {
                continue  // placed here: kept for offline redemption
            }
            for account in Account.allCases
            where everyAccount.contains(member) || accounts.contains(MemberAccount(member, account)) {
                var counter = try counter(db, member: member, account: account)
                // Points still pending (inside the return window) keep their rights here.
                let pending = account == .main ? Int64(clamping: try pendingPoints(db, member: member)) : 0
                let held = counter.rights(node) - pending
                guard held > 0 else { continue }
                let (slot, value) = try counter.move(by: node, to: .hub, UInt64(held))
                tail = try append(
                    db, key: nil, member: nil,
                    operation: .rightsMove(member: member, account: account, to: .hub, points: UInt64(held)),
                    effects: [SlotWrite(member: member, account: account, slot: slot, value: value)]
                ).sequence
            }
        }
        var last = tail
        if rules.pendingDays > 0 {
            // Entries still inside the return window are scanned again at every push, so
            // their rights go to the hub as soon as the window closes.
            let windowStart = HLCTimestamp(milliseconds: now() &- rules.pendingDays * 86_400_000, logical: 0)
            if let first = try db.scalar("SELECT MIN(seq) FROM log WHERE hlc >= ?", [.uint(windowStart.rawValue)]) {
                last = min(last, UInt64(first) - 1)
            }
        }
        if last != scanned { try setMeta(db, .releaseScan, last) }
        // An idle push (the hub has every entry) reads nothing more.
        guard tail > hubHigh else { return [] }
        return try db.query("SELECT entry FROM log WHERE seq > ? ORDER BY seq LIMIT ?", [.uint(hubHigh), .int(limit)])
            .map { try LogEntry(decoding: $0.blob(0)) }
    }

    public func acknowledge(_ db: any SQLDatabase, upTo: UInt64) throws {
        try raiseMeta(db, .acknowledged, to: upTo)
    }

    /// Applies entries of other nodes from the hub's feed; duplicates are skipped, a gap in
    /// any origin's log is refused (the writer rolls the whole batch back). A partner-group
    /// feed (`snapshots` set) brings the members who joined the store's group first, and
    /// skips the entries of other groups' members, so an origin's numbers may jump there.
    /// Returns the remote clock stamps this node's clock refused to follow (too far ahead).
    @discardableResult
    public func applyFeed(
        _ db: any SQLDatabase, _ entries: [FeedEntry], upTo: UInt64, snapshots: [MemberSnapshot]? = nil
    ) throws -> [ClockError] {
        if let snapshots {
            try applySnapshots(db, snapshots)
            if try meta(db, .sparse) == 0 { try setMeta(db, .sparse, 1) }
        }
        let gapsExpected = try snapshots != nil || meta(db, .sparse) == 1
        var clockErrors: [ClockError] = []
        var highs: [NodeID: UInt64] = [:]
        // The clock observes every entry and is stored once, after the batch (read only when
        // the batch holds another node's entry: most pulls bring nothing for this store).
        var clock = HybridLogicalClock(
            last: entries.contains { $0.entry.origin != node } ? try lastClock(db) : HLCTimestamp(rawValue: 0))
        let clockBefore = clock.last
        for feed in entries {
            let entry = feed.entry
            guard entry.origin != node else { continue }
            try entry.validateOrigin()
            let high: UInt64
            if let known = highs[entry.origin] {
                high = known
            } else {
                high = UInt64(
                    try db.scalar(
                        "SELECT COALESCE(MAX(seq), 0) FROM remote_log WHERE origin = ?",
                        [.int(Int(entry.origin.rawValue))]) ?? 0)
            }
            if entry.sequence <= high { continue }
            guard entry.sequence == high + 1 || gapsExpected else {
                throw EntryError.gap(origin: entry.origin, expected: high + 1, got: entry.sequence)
            }
            highs[entry.origin] = entry.sequence
            try db.run(
                "INSERT INTO remote_log(origin, seq, feed_seq, entry, idem_key) VALUES(?, ?, ?, ?, ?)",
                [
                    .int(Int(entry.origin.rawValue)), .uint(entry.sequence), .uint(feed.feedSequence),
                    .blob(entry.encoded), entry.idempotencyKey.isEmpty ? .null : .text(entry.idempotencyKey),
                ])
            switch entry.operation {
            case .registerMember(let record): try applyMember(db, record)
            case .refund(let refund): try recordRefund(db, refund)
            case .purchase(let purchase):
                // The member shopped elsewhere: rights held here for them are looked at again
                // at the next push, and go back to the hub unless this is still their store.
                if active.placementDays > 0 {
                    try recordVisit(db, member: purchase.member, store: entry.origin, at: entry.timestamp)
                }
                if active.placementDays > 0,
                    try Account.allCases.contains(where: {
                        try counter(db, member: purchase.member, account: $0).rights(node) > 0
                    })
                {
                    try queueRelease(db, purchase.member)
                }
            case .memberMerge(let merge):
                // The merged record's cards name the survivor from now on; rights still held
                // here for it go back to the hub at the next push, which moves them over.
                try markMerged(db, merge.merged, into: merge.survivor)
                try queueRelease(db, merge.merged)
            case .rightsMove(let member, _, let to, _) where to == node && !releasesWithTime:
                // A grant for a redemption here that the sale it was asked for did not use
                // (the sale applies its grant itself): it goes back at the next push.
                try queueRelease(db, member)
            case .rightsMove, .promoCredit, .expiry: break
            }
            try applyEffects(db, entry.effects)
            do throws(ClockError) {
                try clock.observe(entry.timestamp, wall: now())
            } catch {
                clockErrors.append(error)
            }
        }
        if clock.last > clockBefore { try setMeta(db, .hlc, clock.last.rawValue) }
        try raiseMeta(db, .feedWatermark, to: upTo)
        return clockErrors
    }

    /// Has the next push look at every account of `member` for rights to hand back.
    func queueRelease(_ db: any SQLDatabase, _ member: MemberID) throws {
        try db.run("INSERT INTO release_queue(member) VALUES(?) ON CONFLICT DO NOTHING", [.uint(member.rawValue)])
    }

    /// Members as the hub holds them (a partner-group feed's newcomers, or a member the hub
    /// found for this store): the registration, the record it was merged into, and the
    /// counter slots, raised only where the hub knows more.
    public func applySnapshots(_ db: any SQLDatabase, _ snapshots: [MemberSnapshot]) throws {
        for snapshot in snapshots {
            try applyMember(db, snapshot.record)
            if let survivor = snapshot.mergedInto { try markMerged(db, snapshot.record.id, into: survivor) }
            try applyEffects(db, snapshot.slots)
        }
    }

    /// The hub merged `merged` into `survivor`: its cards name the survivor from now on.
    func markMerged(_ db: any SQLDatabase, _ merged: MemberID, into survivor: MemberID) throws {
        try db.run(
            "UPDATE members SET merged_into = ? WHERE id = ?", [.uint(survivor.rawValue), .uint(merged.rawValue)])
    }

    /// The record a member's points are on now: the survivor when the hub merged it.
    func survivor(_ db: any SQLDatabase, of member: MemberID) throws -> MemberID {
        try db.query(
            "SELECT merged_into FROM members WHERE id = ? AND merged_into IS NOT NULL", [.uint(member.rawValue)]
        )
        .first.map { MemberID(rawValue: $0.uint(0)) } ?? member
    }

    /// Members as a store's starting state (a store set up with members exported from the
    /// hub, or a simulated world that has run before): applied as snapshots, and this store's
    /// own member numbering goes on after the imported members that are its own. Run it
    /// inside one transaction.
    public func importMembers(_ db: any SQLDatabase, _ snapshots: [MemberSnapshot]) throws {
        // Plain registrations (most of an export) go in together; the rest one by one.
        var plain: [MemberRecord] = []
        var others: [MemberSnapshot] = []
        for snapshot in snapshots {
            if snapshot.mergedInto == nil && snapshot.slots.isEmpty {
                plain.append(snapshot.record)
            } else {
                others.append(snapshot)
            }
        }
        // A large import sets the member count's per-row trigger aside and counts once at
        // the end (a tenth of loading a thousand members), as the hub builds its indexes
        // once; inside the caller's transaction, a failure brings the trigger back with the rows.
        let trigger =
            plain.count >= Self.countOnceFrom
            ? try db.query("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'members_counted'")
                .first?.text(0) : nil
        if trigger != nil { try db.execute("DROP TRIGGER members_counted") }
        try CounterSlots.insertMembers(db, plain)
        if let trigger {
            try setMeta(db, .members, UInt64(try db.scalar("SELECT COUNT(*) FROM members") ?? 0))
            try db.execute(trigger)
        }
        try applySnapshots(db, others)
        let own = snapshots.map(\.record.id).filter { $0.origin == node }.map { $0.rawValue & 0xFFFF_FFFF }.max()
        if let own, own > (try meta(db, .memberSerial)) { try setMeta(db, .memberSerial, own) }
    }

    /// Imports of at least this many plain registrations count the members once.
    static let countOnceFrom = 256

    /// What the store reports to the hub about itself: cheap reads only (no member count),
    /// since it runs on the writer between POS operations.
    func telemetryFigures(_ db: any SQLDatabase) throws -> (unsynced: UInt64, uncoveredPoints: UInt64) {
        let uncovered = UInt64(try db.scalar("SELECT COALESCE(SUM(points), 0) FROM exposure") ?? 0)
        return (try unsyncedEntries(db), uncovered)
    }

    /// Entries of this store's log the hub has not acknowledged yet (two index reads).
    public func unsyncedEntries(_ db: any SQLDatabase) throws -> UInt64 {
        let last = try logTail(db).sequence
        return last - min(last, try meta(db, .acknowledged))
    }

    public func status(_ db: any SQLDatabase, connectivity: Connectivity? = nil) throws -> LedgerStatus {
        var status = LedgerStatus(
            lastSequence: try logTail(db).sequence,
            acknowledgedSequence: try meta(db, .acknowledged),
            feedWatermark: try meta(db, .feedWatermark),
            members: Int64(bitPattern: try meta(db, .members)))
        status.partial = try meta(db, .sparse) == 1
        if let connectivity, !connectivity.online {
            status.exposure = try exposureUse(
                db, member: MemberID(rawValue: 0), outageStart: connectivity.outageStartedMilliseconds)
        }
        if let row = try db.query("SELECT COALESCE(SUM(points), 0), COUNT(*) FROM exposure").first {
            status.exposureTotalPoints = row.uint(0)
            status.exposureTotalCount = row.uint(1)
        }
        return status
    }

    /// A migrated edge database in memory (the simulator's replicas), with a replica's page size.
    public static func openInMemory() throws -> SQLiteConnection {
        let db = try SQLiteConnection(path: ":memory:")
        try db.execute("PRAGMA page_size=\(pageSize)")
        try EdgeSchema.migrator.migrate(db)
        return db
    }

    /// The page size of a replica created by this build. A purchase changes about four pages
    /// at random places (the member's counter slots, the receipt index, splits of either) and
    /// each goes into the WAL whole at COMMIT: 1 KiB pages write a quarter of the bytes of
    /// SQLite's 4 KiB default; in `make bench-edge` the node sold 6-12 % more than with
    /// 4 KiB pages, and its COMMITs were about 10 % shorter than with 2 KiB pages.
    /// A replica made with another size keeps it.
    public static let pageSize = 1_024

    /// Opens (creating if needed) and migrates the edge database.
    public static func open(path: String) throws -> SQLiteConnection {
        let db = try SQLiteConnection.openDurable(path: path, pageSize: pageSize)
        try EdgeSchema.migrator.migrate(db)
        return db
    }
}

/// One account of one member: what the release scan looks at.
private struct MemberAccount: Hashable {
    var member: MemberID
    var account: Account

    init(_ member: MemberID, _ account: Account) {
        self.member = member
        self.account = account
    }
}

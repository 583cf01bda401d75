/// A member record as registered at a store.
public struct MemberRecord: Sendable, Equatable {
    public var id: MemberID
    /// The card number printed on the card (EAN-13 digits), validated at registration.
    public var card: String
    /// Keyed hash of the E.164 phone number (empty when none); phone numbers are never stored.
    public var phoneHash: [UInt8]
    public var referrer: MemberID?
    public var registeredAt: HLCTimestamp

    public init(id: MemberID, card: String, phoneHash: [UInt8], referrer: MemberID?, registeredAt: HLCTimestamp) {
        self.id = id
        self.card = card
        self.phoneHash = phoneHash
        self.referrer = referrer
        self.registeredAt = registeredAt
    }
}

/// A purchase at a lane: what was paid, earned and redeemed.
public struct PurchaseRecord: Sendable, Equatable {
    public var member: MemberID
    public var lane: String
    public var receipt: String
    /// Check total in minor currency units (kopecks).
    public var amountMinor: UInt64
    public var pointsEarned: UInt64
    public var pointsRedeemed: UInt64
    /// Redeemed points not covered by rights held here: offline exposure under the operator's policy.
    public var uncoveredPoints: UInt64
    /// Points paid from the member's promo account (those in `pointsRedeemed` come from main).
    public var promoRedeemed: UInt64

    public init(
        member: MemberID, lane: String, receipt: String, amountMinor: UInt64, pointsEarned: UInt64,
        pointsRedeemed: UInt64, uncoveredPoints: UInt64 = 0, promoRedeemed: UInt64 = 0
    ) {
        self.promoRedeemed = promoRedeemed
        self.member = member
        self.lane = lane
        self.receipt = receipt
        self.amountMinor = amountMinor
        self.pointsEarned = pointsEarned
        self.pointsRedeemed = pointsRedeemed
        self.uncoveredPoints = uncoveredPoints
    }

    /// The idempotency key of this purchase at its store.
    public var key: String { "\(lane)/\(receipt)" }
}

/// A full or partial refund of an earlier purchase, at any store.
public struct RefundRecord: Sendable, Equatable {
    public var member: MemberID
    public var lane: String
    public var receipt: String
    /// The store where the purchase was made, and its key there (`lane/receipt`).
    public var originalStore: NodeID
    public var originalKey: String
    /// Money refunded now, in minor units.
    public var amountMinor: UInt64
    /// Earned points taken back, and redeemed points given back, by this refund.
    public var pointsReversed: UInt64
    public var pointsReturned: UInt64
    /// Promo-account points given back by this refund.
    public var promoReturned: UInt64

    public init(
        member: MemberID, lane: String, receipt: String, originalStore: NodeID, originalKey: String,
        amountMinor: UInt64, pointsReversed: UInt64, pointsReturned: UInt64, promoReturned: UInt64 = 0
    ) {
        self.promoReturned = promoReturned
        self.member = member
        self.lane = lane
        self.receipt = receipt
        self.originalStore = originalStore
        self.originalKey = originalKey
        self.amountMinor = amountMinor
        self.pointsReversed = pointsReversed
        self.pointsReturned = pointsReturned
    }
}

/// What a log entry records. The counter effects travel beside it in `LogEntry.effects`.
public enum Operation: Sendable, Equatable {
    case registerMember(MemberRecord)
    case purchase(PurchaseRecord)
    case refund(RefundRecord)
    /// The hub credited a promo code to a member's promo account.
    case promoCredit(member: MemberID, code: String, points: UInt64)
    /// The hub expired points earned before a cutoff day and not spent since.
    case expiry(member: MemberID, points: UInt64, cutoffDay: Int64)
    /// Redemption rights handed from the entry's origin to another node.
    case rightsMove(member: MemberID, account: Account, to: NodeID, points: UInt64)
    /// The hub merged two records of one person (wire 1.2; only the hub writes it).
    case memberMerge(MemberMerge)
}

/// Two member records of one person (registered at two stores with the same phone) merged
/// by the hub: `merged`'s cards now name `survivor`. Each entry moves what the hub holds of
/// the merged member's points in one account: `points` credited to the survivor and
/// `reversed` taken without credit (a welcome bonus paid twice). The first entry of a merge
/// is its audit record; later ones move points that reached the hub afterwards.
public struct MemberMerge: Sendable, Equatable {
    public var survivor: MemberID
    public var merged: MemberID
    public var account: Account
    public var points: UInt64
    public var reversed: UInt64

    public init(survivor: MemberID, merged: MemberID, account: Account, points: UInt64, reversed: UInt64) {
        self.survivor = survivor
        self.merged = merged
        self.account = account
        self.points = points
        self.reversed = reversed
    }
}

/// A counter slot raised to an absolute value by a log entry. Applying it is `max`, so
/// applying an entry twice, or out of order, changes nothing.
public struct SlotWrite: Sendable, Equatable {
    public var member: MemberID
    public var account: Account
    public var slot: SlotKey
    public var value: UInt64

    public init(member: MemberID, account: Account, slot: SlotKey, value: UInt64) {
        self.member = member
        self.account = account
        self.slot = slot
        self.value = value
    }
}

/// Why a log entry from a peer was refused.
public enum EntryError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The entry writes a slot that belongs to another node (origin binding).
    case foreignSlot(origin: NodeID, slotOwner: NodeID)
    /// The entry claims an origin other than the authenticated peer.
    case wrongOrigin(claimed: NodeID, authenticated: NodeID)
    /// Sequence numbers must follow on without holes.
    case gap(origin: NodeID, expected: UInt64, got: UInt64)

    public var description: String {
        switch self {
        case .foreignSlot(let origin, let owner):
            return "entry from \(origin) writes a counter slot owned by \(owner)"
        case .wrongOrigin(let claimed, let authenticated):
            return "entry claims origin \(claimed) but the channel is authenticated as \(authenticated)"
        case .gap(let origin, let expected, let got):
            return "gap in the log of \(origin): expected entry \(expected), got \(got)"
        }
    }
}

/// One entry of a node's append-only operation log, numbered 1, 2, 3, … per origin.
public struct LogEntry: Sendable, Equatable {
    public var origin: NodeID
    public var sequence: UInt64
    public var timestamp: HLCTimestamp
    /// The POS's idempotency key (`lane/receipt`), empty for internal operations.
    public var idempotencyKey: String
    public var operation: Operation
    public var effects: [SlotWrite]

    public init(
        origin: NodeID, sequence: UInt64, timestamp: HLCTimestamp, idempotencyKey: String, operation: Operation,
        effects: [SlotWrite]
    ) {
        self.origin = origin
        self.sequence = sequence
        self.timestamp = timestamp
        self.idempotencyKey = idempotencyKey
        self.operation = operation
        self.effects = effects
    }

    /// Checks that every effect raises a slot the origin owns.
    public func validateOrigin() throws(EntryError) {
        if case .memberMerge = operation, origin != .hub { throw .foreignSlot(origin: origin, slotOwner: .hub) }
        for effect in effects where effect.slot.owner != origin {
            throw .foreignSlot(origin: origin, slotOwner: effect.slot.owner)
        }
    }
}

// MARK: - Wire encoding

extension LogEntry {
    static let maxEffects = 64
    static let maxTextBytes = 256

    public func encode(into writer: inout ByteWriter) {
        writer.write(origin.rawValue)
        writer.write(sequence)
        writer.write(timestamp.rawValue)
        writer.writeString(idempotencyKey)
        switch operation {
        case .registerMember(let record):
            writer.write(UInt8(1))
            record.encode(into: &writer)
        case .purchase(let purchase):
            writer.write(UInt8(2))
            writer.write(purchase.member.rawValue)
            writer.writeString(purchase.lane)
            writer.writeString(purchase.receipt)
            writer.write(purchase.amountMinor)
            writer.write(purchase.pointsEarned)
            writer.write(purchase.pointsRedeemed)
            writer.write(purchase.uncoveredPoints)
            writer.write(purchase.promoRedeemed)
        case .expiry(let member, let points, let cutoffDay):
            writer.write(UInt8(6))
            writer.write(member.rawValue)
            writer.write(points)
            writer.write(cutoffDay)
        case .promoCredit(let member, let code, let points):
            writer.write(UInt8(5))
            writer.write(member.rawValue)
            writer.writeString(code)
            writer.write(points)
        case .refund(let refund):
            writer.write(UInt8(4))
            writer.write(refund.member.rawValue)
            writer.writeString(refund.lane)
            writer.writeString(refund.receipt)
            writer.write(refund.originalStore.rawValue)
            writer.writeString(refund.originalKey)
            writer.write(refund.amountMinor)
            writer.write(refund.pointsReversed)
            writer.write(refund.pointsReturned)
            writer.write(refund.promoReturned)
        case .rightsMove(let member, let account, let to, let points):
            writer.write(UInt8(3))
            writer.write(member.rawValue)
            writer.write(account.rawValue)
            writer.write(to.rawValue)
            writer.write(points)
        case .memberMerge(let merge):
            writer.write(UInt8(7))
            writer.write(merge.survivor.rawValue)
            writer.write(merge.merged.rawValue)
            writer.write(merge.account.rawValue)
            writer.write(merge.points)
            writer.write(merge.reversed)
        }
        writer.write(UInt32(effects.count))
        for effect in effects { effect.encode(into: &writer) }
    }

    public static func decode(from reader: inout ByteReader) throws(WireError) -> LogEntry {
        let origin = NodeID(try reader.readUInt32())
        let sequence = try reader.readUInt64()
        let timestamp = HLCTimestamp(rawValue: try reader.readUInt64())
        let key = try reader.readString(field: "idempotency key", limit: maxTextBytes)
        let operation: Operation
        switch try reader.readUInt8() {
        case 1:
            operation = .registerMember(try MemberRecord.decode(from: &reader))
        case 2:
            let member = MemberID(rawValue: try reader.readUInt64())
            let lane = try reader.readString(field: "lane", limit: maxTextBytes)
            let receipt = try reader.readString(field: "receipt", limit: maxTextBytes)
            operation = .purchase(
                PurchaseRecord(
                    member: member, lane: lane, receipt: receipt, amountMinor: try reader.readUInt64(),
                    pointsEarned: try reader.readUInt64(), pointsRedeemed: try reader.readUInt64(),
                    uncoveredPoints: try reader.readUInt64(), promoRedeemed: try reader.readUInt64()))
        case 4:
            let member = MemberID(rawValue: try reader.readUInt64())
            let lane = try reader.readString(field: "lane", limit: maxTextBytes)
            let receipt = try reader.readString(field: "receipt", limit: maxTextBytes)
            let originalStore = NodeID(try reader.readUInt32())
            let originalKey = try reader.readString(field: "original receipt", limit: maxTextBytes)
            operation = .refund(
                RefundRecord(
                    member: member, lane: lane, receipt: receipt, originalStore: originalStore,
                    originalKey: originalKey, amountMinor: try reader.readUInt64(),
                    pointsReversed: try reader.readUInt64(), pointsReturned: try reader.readUInt64(),
                    promoReturned: try reader.readUInt64()))
        case 6:
            let member = MemberID(rawValue: try reader.readUInt64())
            operation = .expiry(member: member, points: try reader.readUInt64(), cutoffDay: try reader.readInt64())
        case 5:
            let member = MemberID(rawValue: try reader.readUInt64())
            let code = try reader.readString(field: "promo code", limit: maxTextBytes)
            operation = .promoCredit(member: member, code: code, points: try reader.readUInt64())
        case 3:
            let member = MemberID(rawValue: try reader.readUInt64())
            let account = try decodeAccount(&reader)
            let to = NodeID(try reader.readUInt32())
            operation = .rightsMove(member: member, account: account, to: to, points: try reader.readUInt64())
        case 7:
            let survivor = MemberID(rawValue: try reader.readUInt64())
            let merged = MemberID(rawValue: try reader.readUInt64())
            let account = try decodeAccount(&reader)
            operation = .memberMerge(
                MemberMerge(
                    survivor: survivor, merged: merged, account: account, points: try reader.readUInt64(),
                    reversed: try reader.readUInt64()))
        case let tag:
            throw .unknownTag(field: "operation", value: UInt64(tag))
        }
        let count = try reader.readCount(field: "effects", limit: maxEffects)
        var effects: [SlotWrite] = []
        effects.reserveCapacity(count)
        for _ in 0..<count { effects.append(try SlotWrite.decode(from: &reader)) }
        return LogEntry(
            origin: origin, sequence: sequence, timestamp: timestamp, idempotencyKey: key, operation: operation,
            effects: effects)
    }

    static func decodeAccount(_ reader: inout ByteReader) throws(WireError) -> Account {
        let tag = try reader.readUInt8()
        guard let account = Account(rawValue: tag) else { throw .unknownTag(field: "account", value: UInt64(tag)) }
        return account
    }

    /// The entry alone as bytes (how nodes store it).
    public var encoded: [UInt8] {
        var writer = ByteWriter(capacity: 128)
        encode(into: &writer)
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(WireError) {
        var reader = ByteReader(bytes)
        self = try LogEntry.decode(from: &reader)
        try reader.expectEnd()
    }
}

extension MemberRecord {
    func encode(into writer: inout ByteWriter) {
        writer.write(id.rawValue)
        writer.writeString(card)
        writer.writeBytes(phoneHash)
        writer.write(referrer?.rawValue ?? 0)
        writer.write(registeredAt.rawValue)
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> MemberRecord {
        let id = MemberID(rawValue: try reader.readUInt64())
        let card = try reader.readString(field: "card", limit: LogEntry.maxTextBytes)
        let phoneHash = try reader.readBytes(field: "phone hash", limit: 64)
        let referrer = try reader.readUInt64()
        return MemberRecord(
            id: id, card: card, phoneHash: phoneHash, referrer: referrer == 0 ? nil : MemberID(rawValue: referrer),
            registeredAt: HLCTimestamp(rawValue: try reader.readUInt64()))
    }
}

extension SlotWrite {
    func encode(into writer: inout ByteWriter) {
        writer.write(member.rawValue)
        writer.write(account.rawValue)
        writer.write(slot.kind.rawValue)
        writer.write(slot.from.rawValue)
        writer.write(slot.to.rawValue)
        writer.write(value)
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> SlotWrite {
        let member = MemberID(rawValue: try reader.readUInt64())
        let account = try LogEntry.decodeAccount(&reader)
        let kindTag = try reader.readUInt8()
        guard let kind = SlotKind(rawValue: kindTag) else {
            throw .unknownTag(field: "slot kind", value: UInt64(kindTag))
        }
        let from = NodeID(try reader.readUInt32())
        let to = NodeID(try reader.readUInt32())
        return SlotWrite(
            member: member, account: account, slot: SlotKey(kind: kind, from: from, to: to),
            value: try reader.readUInt64())
    }
}

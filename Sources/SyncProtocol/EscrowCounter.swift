/// The kind of a monotone counter slot.
public enum SlotKind: UInt8, Sendable, CaseIterable {
    /// `earned[i]`: points added at node `i`.
    case earned = 0
    /// `spent[i]`: points taken at node `i`.
    case spent = 1
    /// `moved[i→j]`: redemption rights node `i` handed to node `j`.
    case moved = 2
    /// Money spent (minor units) at node `i` in one calendar month; `to` holds the month
    /// (months since January 1970). Monthly spend is itself a mergeable counter.
    case spend = 3
    /// Money refunded at node `i` against purchases of that month.
    case refundedSpend = 4
}

/// One slot of a member's escrow counter. Only node `from` ever raises it.
public struct SlotKey: Hashable, Sendable, Comparable {
    public var kind: SlotKind
    public var from: NodeID
    public var to: NodeID

    public init(kind: SlotKind, from: NodeID, to: NodeID) {
        self.kind = kind
        self.from = from
        self.to = to
    }

    public static func earned(_ node: NodeID) -> SlotKey { SlotKey(kind: .earned, from: node, to: node) }
    public static func spent(_ node: NodeID) -> SlotKey { SlotKey(kind: .spent, from: node, to: node) }
    public static func moved(_ from: NodeID, _ to: NodeID) -> SlotKey { SlotKey(kind: .moved, from: from, to: to) }
    public static func spend(_ node: NodeID, month: UInt32) -> SlotKey {
        SlotKey(kind: .spend, from: node, to: NodeID(month))
    }
    public static func refundedSpend(_ node: NodeID, month: UInt32) -> SlotKey {
        SlotKey(kind: .refundedSpend, from: node, to: NodeID(month))
    }

    /// The node allowed to raise this slot.
    public var owner: NodeID { from }

    public static func < (lhs: SlotKey, rhs: SlotKey) -> Bool {
        (lhs.kind.rawValue, lhs.from, lhs.to) < (rhs.kind.rawValue, rhs.from, rhs.to)
    }
}

/// Why a counter operation was refused.
public enum CounterError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Redeeming would exceed the rights held here plus the offline allowance.
    case insufficientRights(requested: UInt64, redeemable: UInt64)
    /// A node tried to move rights it does not hold.
    case notHolder(node: NodeID, from: NodeID)
    case overflow
    case nonPositiveAmount

    public var description: String {
        switch self {
        case .insufficientRights(let requested, let redeemable):
            return "cannot redeem \(requested) points here: \(redeemable) points are redeemable at this store now"
        case .notHolder(let node, let from):
            return "\(node) cannot move rights held by \(from)"
        case .overflow: return "points amount overflows"
        case .nonPositiveAmount: return "points amount must be positive"
        }
    }
}

/// A bounded counter with escrowed redemption rights (Balegas et al., SRDS 2015) for one
/// member's account: `earned[i]`, `spent[i]` and `moved[i→j]` slots, merged by taking the
/// larger value per slot. Balance is Σearned − Σspent; node `i` may redeem only within
/// `rights(i) + allowance(i)`, so with allowance 0 no partition can overdraw the account.
public struct EscrowCounter: Sendable, Equatable {
    public private(set) var slots: [SlotKey: UInt64]

    public init(slots: [SlotKey: UInt64] = [:]) { self.slots = slots }

    public subscript(_ key: SlotKey) -> UInt64 { slots[key] ?? 0 }

    /// Σearned − Σspent. Negative only as a member debt (a refund of points already spent).
    public var balance: Int64 {
        var total: Int64 = 0
        for (key, value) in slots {
            switch key.kind {
            case .earned: total &+= Int64(truncatingIfNeeded: value)
            case .spent: total &-= Int64(truncatingIfNeeded: value)
            case .moved, .spend, .refundedSpend: break
            }
        }
        return total
    }

    /// rights(i) = earned[i] + Σ moved[j→i] − Σ moved[i→j] − spent[i].
    public func rights(_ node: NodeID) -> Int64 { rights { $0 == node } }

    /// Σ rights(i) over the nodes in `nodes`, in one pass over the slots. Over every node a
    /// slot names, it equals the balance: moves between them cancel out.
    public func rights(among nodes: Set<NodeID>) -> Int64 { rights { nodes.contains($0) } }

    @inline(__always) private func rights(of holds: (NodeID) -> Bool) -> Int64 {
        var total: Int64 = 0
        for (key, value) in slots {
            let amount = Int64(truncatingIfNeeded: value)
            switch key.kind {
            case .earned where holds(key.from): total &+= amount
            case .spent where holds(key.from): total &-= amount
            case .moved:
                if holds(key.to) { total &+= amount }
                if holds(key.from) { total &-= amount }
            default: break
            }
        }
        return total
    }

    /// How many points node `node` may redeem now with the given offline allowance.
    public func redeemable(at node: NodeID, allowance: UInt64 = 0) -> UInt64 {
        let total = rights(node) &+ Int64(clamping: allowance)
        return total > 0 ? UInt64(total) : 0
    }

    /// Net money spent in `month` across every node (purchases less refunds), in minor units.
    public func monthlySpend(month: UInt32) -> UInt64 {
        var spent: UInt64 = 0
        var refunded: UInt64 = 0
        for (key, value) in slots where key.to.rawValue == month {
            if key.kind == .spend { spent &+= value }
            if key.kind == .refundedSpend { refunded &+= value }
        }
        return spent > refunded ? spent - refunded : 0
    }

    /// Adds money spent at `node` in `month`.
    public mutating func addSpend(at node: NodeID, month: UInt32, _ amount: UInt64) throws(CounterError) -> (
        SlotKey, UInt64
    ) {
        try raise(.spend(node, month: month), by: amount)
    }

    /// Adds money refunded at `node` against purchases of `month`.
    public mutating func addRefundedSpend(at node: NodeID, month: UInt32, _ amount: UInt64) throws(CounterError) -> (
        SlotKey, UInt64
    ) {
        try raise(.refundedSpend(node, month: month), by: amount)
    }

    /// Raises a slot to `value` if that is larger ("take the larger value per slot").
    /// Returns whether the slot changed.
    @discardableResult
    public mutating func apply(_ key: SlotKey, _ value: UInt64) -> Bool {
        if let current = slots[key], current >= value { return false }
        slots[key] = value
        return true
    }

    /// Merges another replica's state: commutative, associative and idempotent.
    public mutating func merge(_ other: EscrowCounter) {
        for (key, value) in other.slots { apply(key, value) }
    }

    /// Adds earned points at `node`; returns the slot and its new value.
    public mutating func earn(at node: NodeID, _ points: UInt64) throws(CounterError) -> (SlotKey, UInt64) {
        try raise(.earned(node), by: points)
    }

    /// Takes points at `node` within its rights plus `allowance`.
    public mutating func redeem(at node: NodeID, _ points: UInt64, allowance: UInt64 = 0) throws(CounterError) -> (
        SlotKey, UInt64
    ) {
        let redeemable = redeemable(at: node, allowance: allowance)
        guard points <= redeemable else { throw .insufficientRights(requested: points, redeemable: redeemable) }
        return try raise(.spent(node), by: points)
    }

    /// Takes points at `node` without a rights check: reversed accruals, expiry and debts,
    /// which may drive the balance below zero and must never be refused.
    public mutating func debit(at node: NodeID, _ points: UInt64) throws(CounterError) -> (SlotKey, UInt64) {
        try raise(.spent(node), by: points)
    }

    /// Node `by` hands `points` of its rights to node `to`.
    public mutating func move(by node: NodeID, to target: NodeID, _ points: UInt64) throws(CounterError) -> (
        SlotKey, UInt64
    ) {
        let held = rights(node)
        guard held >= 0, UInt64(held) >= points else {
            throw .insufficientRights(requested: points, redeemable: held > 0 ? UInt64(held) : 0)
        }
        return try raise(.moved(node, target), by: points)
    }

    private mutating func raise(_ key: SlotKey, by points: UInt64) throws(CounterError) -> (SlotKey, UInt64) {
        guard points > 0 else { throw .nonPositiveAmount }
        let (sum, overflow) = self[key].addingReportingOverflow(points)
        guard !overflow, sum <= UInt64(Int64.max) else { throw .overflow }
        slots[key] = sum
        return (key, sum)
    }
}

/// A member's account: the unit an escrow counter belongs to.
public struct AccountKey: Hashable, Sendable, Comparable {
    public var member: MemberID
    public var account: Account

    public init(member: MemberID, account: Account) {
        self.member = member
        self.account = account
    }

    public static func < (lhs: AccountKey, rhs: AccountKey) -> Bool {
        (lhs.member, lhs.account.rawValue) < (rhs.member, rhs.account.rawValue)
    }
}

/// The counter state of a whole replica, in memory, with delta production: every slot
/// remembers the local version at which it last rose, so "everything after watermark `w`"
/// is the slots with a version above `w`, at their current values. Applying deltas or full
/// states in any order, any number of times, gives the same state (max per slot).
public struct ReplicaState: Sendable {
    private struct SlotID: Hashable {
        var account: AccountKey
        var slot: SlotKey
    }

    public private(set) var counters: [AccountKey: EscrowCounter] = [:]
    private var versions: [SlotID: UInt64] = [:]
    /// The local version of the last change; a peer that has seen up to here needs nothing.
    public private(set) var version: UInt64 = 0

    public init() {}

    public func counter(_ key: AccountKey) -> EscrowCounter { counters[key] ?? EscrowCounter() }

    /// Applies slot writes; returns how many slots rose.
    @discardableResult
    public mutating func apply(_ writes: [SlotWrite]) -> Int {
        var changed = 0
        for write in writes {
            let key = AccountKey(member: write.member, account: write.account)
            if counters[key, default: EscrowCounter()].apply(write.slot, write.value) {
                version += 1
                versions[SlotID(account: key, slot: write.slot)] = version
                changed += 1
            }
        }
        return changed
    }

    /// Everything that changed after `watermark`, and the watermark that covers it.
    public func delta(after watermark: UInt64) -> (writes: [SlotWrite], upTo: UInt64) {
        guard watermark < version else { return ([], version) }
        var writes: [SlotWrite] = []
        for (id, slotVersion) in versions where slotVersion > watermark {
            writes.append(
                SlotWrite(
                    member: id.account.member, account: id.account.account, slot: id.slot,
                    value: counters[id.account]?[id.slot] ?? 0))
        }
        return (writes, version)
    }

    /// The whole state as slot writes (what a full-state transfer sends).
    public var fullState: [SlotWrite] { delta(after: 0).writes }

    /// Merges another replica's whole state.
    public mutating func merge(_ other: ReplicaState) { apply(other.fullState) }

    // MARK: Local operations at `node`; each returns the write to log and ship.

    public mutating func earn(at node: NodeID, _ key: AccountKey, _ points: UInt64) throws(CounterError) -> SlotWrite {
        var counter = counter(key)
        let (slot, value) = try counter.earn(at: node, points)
        return commit(key, slot, value)
    }

    public mutating func redeem(at node: NodeID, _ key: AccountKey, _ points: UInt64, allowance: UInt64 = 0)
        throws(CounterError) -> SlotWrite
    {
        var counter = counter(key)
        let (slot, value) = try counter.redeem(at: node, points, allowance: allowance)
        return commit(key, slot, value)
    }

    public mutating func move(by node: NodeID, to target: NodeID, _ key: AccountKey, _ points: UInt64)
        throws(CounterError) -> SlotWrite
    {
        var counter = counter(key)
        let (slot, value) = try counter.move(by: node, to: target, points)
        return commit(key, slot, value)
    }

    private mutating func commit(_ key: AccountKey, _ slot: SlotKey, _ value: UInt64) -> SlotWrite {
        let write = SlotWrite(member: key.member, account: key.account, slot: slot, value: value)
        apply([write])
        return write
    }
}

extension ReplicaState: Equatable {
    /// Two replicas are equal when their counters are; local versions do not matter.
    public static func == (lhs: ReplicaState, rhs: ReplicaState) -> Bool {
        let left = lhs.counters.filter { !$0.value.slots.isEmpty }
        let right = rhs.counters.filter { !$0.value.slots.isEmpty }
        return left == right
    }
}

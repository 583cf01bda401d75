/// The clearing between partners: points earned at partner A and spent at partner B are a
/// debt from A to B. Attribution is first-in, first-out per member: the oldest points are
/// spent first. Points spent that no earned points cover (a member debt) are reported
/// apart, never charged to a partner.
public struct ClearingReport: Sendable, Equatable {
    /// `owed[a][b]`: points earned at partner `a` and spent at partner `b` in the period.
    public var gross: [String: [String: UInt64]] = [:]
    /// Points spent in the period that no earned points covered.
    public var uncovered: UInt64 = 0
    /// Liability at the end of the replay: points each partner issued that are not yet spent.
    public var liability: [String: UInt64] = [:]

    public init() {}

    /// For each pair, who owes whom how much after netting, largest first.
    public var netted: [(debtor: String, creditor: String, points: UInt64)] {
        var result: [(String, String, UInt64)] = []
        let partners = Set(gross.keys).union(gross.values.flatMap(\.keys)).sorted()
        for (index, a) in partners.enumerated() {
            for b in partners[(index + 1)...] {
                let ab = gross[a]?[b] ?? 0
                let ba = gross[b]?[a] ?? 0
                if ab > ba { result.append((a, b, ab - ba)) } else if ba > ab { result.append((b, a, ba - ab)) }
            }
        }
        return result.sorted { ($0.2, $0.0, $0.1) > ($1.2, $1.0, $1.1) }
    }

    /// Each partner's net position: positive is owed to it, negative it owes. Sums to zero.
    public var balances: [String: Int64] {
        var balance: [String: Int64] = [:]
        for (debtor, creditor, points) in netted {
            balance[debtor, default: 0] -= Int64(points)
            balance[creditor, default: 0] += Int64(points)
        }
        return balance
    }
}

/// Replays log entries in hybrid-clock order and attributes every spent point to the
/// partner where it was earned.
public struct ClearingCalculator {
    private var lots: [MemberID: [(partner: String, points: UInt64, earnedAt: UInt64)]] = [:]
    private var slotValues: [SlotID: UInt64] = [:]
    private let partnerOf: (NodeID) -> String
    private let period: ClosedRange<UInt64>
    public private(set) var report = ClearingReport()

    private struct SlotID: Hashable {
        var member: MemberID
        var slot: SlotKey
    }

    /// `period` in Unix milliseconds (spends inside it are reported); `partnerOf` names the
    /// partner of each node.
    public init(period: ClosedRange<UInt64>, partnerOf: @escaping (NodeID) -> String) {
        self.period = period
        self.partnerOf = partnerOf
    }

    /// The report, with each partner's outstanding points as its liability.
    public var finished: ClearingReport {
        var result = report
        result.liability = [:]
        for queue in lots.values {
            for lot in queue where lot.points > 0 { result.liability[lot.partner, default: 0] += lot.points }
        }
        return result
    }

    /// Feeds the next entry; entries must come in hybrid-clock order.
    public mutating func add(_ entry: LogEntry) {
        if case .memberMerge(let merge) = entry.operation {
            addMerge(merge, entry)
            return
        }
        let inPeriod = period.contains(entry.timestamp.milliseconds)
        for effect in entry.effects where effect.account == .main {
            let id = SlotID(member: effect.member, slot: effect.slot)
            let previous = slotValues[id] ?? 0
            guard effect.value > previous else { continue }
            slotValues[id] = effect.value
            let delta = effect.value - previous
            switch effect.slot.kind {
            case .earned:
                lots[effect.member, default: []].append(
                    (partnerOf(effect.slot.from), delta, entry.timestamp.milliseconds))
            case .spent:
                if case .expiry = entry.operation {
                    // Expired points leave the lots without anyone spending them.
                    consumeOldest(delta, member: effect.member)
                } else if case .refund(let refund) = entry.operation {
                    // A reversed accrual cancels points the purchase's partner gave; it is
                    // not spending, so it creates no debt between partners.
                    reverse(delta, member: effect.member, partner: partnerOf(refund.originalStore))
                } else {
                    spend(delta, member: effect.member, at: partnerOf(effect.slot.from), counted: inPeriod)
                }
            case .moved, .spend, .refundedSpend:
                break
            }
        }
    }

    /// A member merge: the reversed points leave the merged member's lots charging no one;
    /// the moved ones go to the survivor with the partner that issued them and their age.
    private mutating func addMerge(_ merge: MemberMerge, _ entry: LogEntry) {
        var raised = false
        for effect in entry.effects {
            let id = SlotID(member: effect.member, slot: effect.slot)
            if effect.value > slotValues[id] ?? 0 {
                slotValues[id] = effect.value
                raised = true
            }
        }
        guard raised, merge.account == .main else { return }
        consumeOldest(merge.reversed, member: merge.merged)
        var remaining = merge.points
        var queue = lots[merge.merged] ?? []
        var moved: [(partner: String, points: UInt64, earnedAt: UInt64)] = []
        while remaining > 0, !queue.isEmpty {
            let taken = min(remaining, queue[0].points)
            moved.append((queue[0].partner, taken, queue[0].earnedAt))
            queue[0].points -= taken
            remaining -= taken
            if queue[0].points == 0 { queue.removeFirst() }
        }
        lots[merge.merged] = queue
        lots[merge.survivor, default: []] += moved
        lots[merge.survivor]?.sort { $0.earnedAt < $1.earnedAt }
    }

    /// Removes the member's oldest points, charging no one.
    private mutating func consumeOldest(_ points: UInt64, member: MemberID) {
        var remaining = points
        var queue = lots[member] ?? []
        while remaining > 0, !queue.isEmpty {
            let taken = min(remaining, queue[0].points)
            queue[0].points -= taken
            remaining -= taken
            if queue[0].points == 0 { queue.removeFirst() }
        }
        lots[member] = queue
    }

    /// The member's unspent points earned before `cutoff` (Unix milliseconds), as of the
    /// entries fed so far: what expiry would take.
    public func unspent(member: MemberID, earnedBefore cutoff: UInt64) -> UInt64 {
        (lots[member] ?? []).filter { $0.earnedAt < cutoff }.reduce(0) { $0 + $1.points }
    }

    /// Members with any unspent points.
    public var membersWithPoints: [MemberID] { lots.filter { !$0.value.isEmpty }.map(\.key).sorted() }

    /// Removes points from the member's lots of `partner`, newest first, then from any.
    private mutating func reverse(_ points: UInt64, member: MemberID, partner: String) {
        var remaining = points
        var queue = lots[member] ?? []
        for index in queue.indices.reversed() where remaining > 0 && queue[index].partner == partner {
            let taken = min(remaining, queue[index].points)
            queue[index].points -= taken
            remaining -= taken
        }
        for index in queue.indices.reversed() where remaining > 0 {
            let taken = min(remaining, queue[index].points)
            queue[index].points -= taken
            remaining -= taken
        }
        lots[member] = queue.filter { $0.points > 0 }
    }

    private mutating func spend(_ points: UInt64, member: MemberID, at spender: String, counted: Bool) {
        var remaining = points
        var queue = lots[member] ?? []
        while remaining > 0, !queue.isEmpty {
            let taken = min(remaining, queue[0].points)
            if counted && queue[0].partner != spender {
                report.gross[queue[0].partner, default: [:]][spender, default: 0] += taken
            }
            queue[0].points -= taken
            remaining -= taken
            if queue[0].points == 0 { queue.removeFirst() }
        }
        lots[member] = queue
        if counted { report.uncovered += remaining }
    }
}

import NodeKit
import SyncProtocol

extension HubLedger {
    /// The clearing report for spends between two Unix times (inclusive), over every entry
    /// the hub holds, in hybrid-clock order. Stores map to their partners; the hub's own
    /// credits belong to "coalition".
    public func clearing(_ db: any SQLDatabase, period: ClosedRange<UInt64>) throws -> ClearingReport {
        var partners: [NodeID: String] = [.hub: "coalition"]
        for store in try stores(db) { partners[store.id] = store.partner }
        var calculator = ClearingCalculator(period: period) { partners[$0] ?? "store-\($0.rawValue)" }
        for row in try db.query("SELECT entry FROM entries ORDER BY hlc, origin, seq") {
            calculator.add(try LogEntry(decoding: row.blob(0)))
        }
        return calculator.finished
    }

    /// Offline exposure per store: redemptions beyond the rights held, under the offline
    /// policy, and whether the member's balance has since stayed covered.
    public func exposure(_ db: any SQLDatabase) throws -> [(
        store: String, redemptions: Int, points: UInt64, members: Int, membersNowInDebt: Int
    )] {
        var names: [NodeID: String] = [:]
        for store in try stores(db) { names[store.id] = store.name }
        var perStore: [NodeID: (count: Int, points: UInt64, members: Set<MemberID>)] = [:]
        for row in try db.query("SELECT entry FROM entries WHERE origin != 0") {
            let entry = try LogEntry(decoding: row.blob(0))
            guard case .purchase(let purchase) = entry.operation, purchase.uncoveredPoints > 0 else { continue }
            var current = perStore[entry.origin] ?? (0, 0, [])
            current.count += 1
            current.points += purchase.uncoveredPoints
            current.members.insert(purchase.member)
            perStore[entry.origin] = current
        }
        return try perStore.sorted { $0.key < $1.key }.map { node, value in
            let inDebt = try value.members.filter { try counter(db, member: $0, account: .main).balance < 0 }.count
            return (names[node] ?? "\(node)", value.count, value.points, value.members.count, inDebt)
        }
    }

    /// The programme's time-zone offset from the latest rules (0 before any are published).
    public func timeZoneOffsetMinutes(_ db: any SQLDatabase) throws -> Int32 {
        try currentRules(db)?.timeZoneOffsetMinutes ?? 0
    }
}

extension ClearingReport {
    /// One row per netted pair, then the partners' balances, as CSV.
    public var csv: String {
        var lines = ["debtor,creditor,points"]
        for row in netted { lines.append("\(row.debtor),\(row.creditor),\(row.points)") }
        lines.append("")
        lines.append("partner,balance")
        for (partner, balance) in balances.sorted(by: { $0.key < $1.key }) { lines.append("\(partner),\(balance)") }
        lines.append("")
        lines.append("uncovered,\(uncovered)")
        lines.append("")
        lines.append("partner,liability")
        for (partner, points) in liability.sorted(by: { $0.key < $1.key }) { lines.append("\(partner),\(points)") }
        return lines.joined(separator: "\n") + "\n"
    }

    public var json: JSONValue {
        .object([
            "gross": .object(gross.mapValues { .object($0.mapValues { .int(Int64($0)) }) }),
            "netted": .array(
                netted.map {
                    .object([
                        "debtor": .string($0.debtor), "creditor": .string($0.creditor),
                        "points": .int(Int64($0.points)),
                    ])
                }),
            "balances": .object(balances.mapValues { .int($0) }),
            "uncovered": .int(Int64(uncovered)),
            "liability": .object(liability.mapValues { .int(Int64($0)) }),
        ])
    }
}

extension HubLedger {
    /// Expires, oldest first, the points each member earned before `cutoff` (Unix
    /// milliseconds) and has not spent, as hub entries raising `spent[hub]`. Only points whose
    /// redemption rights the hub holds can expire now (otherwise a store could still redeem
    /// them); the rest is reported as waiting for the stores to hand their rights back.
    public func expire(_ db: any SQLDatabase, cutoff: UInt64, cutoffDay: Int64) throws -> [(
        member: MemberID, expired: UInt64, waiting: UInt64
    )] {
        var calculator = ClearingCalculator(period: 0...0) { _ in "" }
        for row in try db.query("SELECT entry FROM entries ORDER BY hlc, origin, seq") {
            calculator.add(try LogEntry(decoding: row.blob(0)))
        }
        var result: [(MemberID, UInt64, UInt64)] = []
        for member in calculator.membersWithPoints {
            let due = calculator.unspent(member: member, earnedBefore: cutoff)
            guard due > 0 else { continue }
            var counter = try counter(db, member: member, account: .main)
            let held = counter.rights(.hub)
            let now = min(due, held > 0 ? UInt64(held) : 0)
            if now > 0 {
                let (slot, value) = try counter.redeem(at: .hub, now)
                _ = try appendHubEntry(
                    db, operation: .expiry(member: member, points: now, cutoffDay: cutoffDay),
                    effects: [SlotWrite(member: member, account: .main, slot: slot, value: value)])
            }
            result.append((member, now, due - now))
        }
        return result
    }
}

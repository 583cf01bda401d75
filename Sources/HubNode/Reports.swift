import NodeKit
import SyncProtocol

extension HubLedger {
    /// The clearing report for spends between two Unix times (inclusive), over every entry
    /// the hub holds, in hybrid-clock order. Stores map to their partners; the hub's own
    /// credits belong to "coalition".
    public func clearing(_ db: SQLiteConnection, period: ClosedRange<UInt64>) throws -> ClearingReport {
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
    public func exposure(_ db: SQLiteConnection) throws -> [(
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
    public func timeZoneOffsetMinutes(_ db: SQLiteConnection) throws -> Int32 {
        guard let latest = try latestRules(db, newerThan: 0) else { return 0 }
        return (try? RulesDocument(decoding: Array(latest.document.dropFirst(64))))?.timeZoneOffsetMinutes ?? 0
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

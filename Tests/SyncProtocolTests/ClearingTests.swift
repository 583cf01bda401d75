import Testing

@testable import SyncProtocol

private let member = MemberID(origin: NodeID(1), serial: 1)
private let partners: [NodeID: String] = [
    NodeID(1): "grocer", NodeID(2): "fuel", NodeID(3): "pharmacy", .hub: "coalition",
]

private struct Script {
    var entries: [LogEntry] = []
    var values: [SlotKey: UInt64] = [:]
    var clock: UInt64 = 1_000

    mutating func add(_ node: UInt32, earned: UInt64 = 0, spent: UInt64 = 0, refundOf original: UInt32? = nil) {
        var effects: [SlotWrite] = []
        if earned > 0 {
            values[.earned(NodeID(node)), default: 0] += earned
            effects.append(
                SlotWrite(
                    member: member, account: .main, slot: .earned(NodeID(node)), value: values[.earned(NodeID(node))]!))
        }
        if spent > 0 {
            values[.spent(NodeID(node)), default: 0] += spent
            effects.append(
                SlotWrite(
                    member: member, account: .main, slot: .spent(NodeID(node)), value: values[.spent(NodeID(node))]!))
        }
        clock += 1_000
        let operation: Operation =
            original.map {
                .refund(
                    RefundRecord(
                        member: member, lane: "1", receipt: "r\(clock)", originalStore: NodeID($0), originalKey: "1/p",
                        amountMinor: 1, pointsReversed: spent, pointsReturned: earned))
            }
            ?? .purchase(
                PurchaseRecord(
                    member: member, lane: "1", receipt: "p\(clock)", amountMinor: 1, pointsEarned: earned,
                    pointsRedeemed: spent))
        entries.append(
            LogEntry(
                origin: NodeID(node), sequence: UInt64(entries.count + 1),
                timestamp: HLCTimestamp(milliseconds: clock, logical: 0), idempotencyKey: "", operation: operation,
                effects: effects))
    }

    func report(from: UInt64 = 0, to: UInt64 = .max) -> ClearingReport {
        var calculator = ClearingCalculator(period: from...to) { partners[$0] ?? "unknown" }
        for entry in entries { calculator.add(entry) }
        return calculator.finished
    }
}

@Suite struct ClearingTests {
    @Test func pointsSpentAtAnotherPartnerAreItsDebtOldestPointsFirst() {
        var script = Script()
        script.add(1, earned: 100)  // grocer
        script.add(2, earned: 50)  // fuel
        script.add(3, spent: 120)  // pharmacy: 100 from grocer, 20 from fuel
        script.add(1, spent: 30)  // grocer: the remaining 30 from fuel
        let report = script.report()
        #expect(report.gross["grocer"]?["pharmacy"] == 100)
        #expect(report.gross["fuel"]?["pharmacy"] == 20)
        #expect(report.gross["fuel"]?["grocer"] == 30)
        #expect(report.uncovered == 0)
        #expect(report.balances.values.reduce(0, +) == 0, "totals balance")
        #expect(
            report.balances["pharmacy"] == 120 && report.balances["fuel"] == -50 && report.balances["grocer"] == -70)
        #expect(report.liability.isEmpty, "every point issued was spent")
    }

    @Test func opposingDebtsAreNetted() {
        var script = Script()
        script.add(1, earned: 100)
        script.add(2, earned: 100)
        script.add(2, spent: 100)  // fuel spends grocer's 100
        script.add(1, spent: 60)  // grocer spends 60 of fuel's
        let netted = script.report().netted
        #expect(netted.count == 1)
        #expect(netted.first?.debtor == "grocer" && netted.first?.creditor == "fuel" && netted.first?.points == 40)
    }

    @Test func onlySpendingInThePeriodIsReportedButEarlierHistoryPlaceTheLots() {
        var script = Script()
        script.add(1, earned: 100)  // t = 2,000
        script.add(2, spent: 40)  // t = 3,000: before the period
        script.add(3, spent: 40)  // t = 4,000: in it
        let report = script.report(from: 3_500)
        #expect(report.gross["grocer"]?["fuel"] == nil)
        #expect(report.gross["grocer"]?["pharmacy"] == 40)
        #expect(report.liability == ["grocer": 20], "20 of the grocer's points are still outstanding")
    }

    @Test func aReversedAccrualIsNotADebtAndUncoveredSpendingIsReportedApart() {
        var script = Script()
        script.add(1, earned: 100)
        script.add(2, earned: 50)
        script.add(2, spent: 50, refundOf: 2)  // fuel's purchase refunded: its 50 points reversed
        script.add(3, spent: 130)  // 100 from grocer, 30 uncovered (a member debt)
        let report = script.report()
        #expect(report.gross["fuel"] == nil)
        #expect(report.gross["grocer"]?["pharmacy"] == 100)
        #expect(report.uncovered == 30)
    }
}

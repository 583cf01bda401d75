import EdgeNode
import Foundation
import NodeKit
import SyncProtocol

/// The walking-skeleton scenario on a real cluster, narrated for a person: a member
/// registers at store A and earns points, the points sync, store B redeems some, B is cut
/// off and keeps selling, B reconnects, and A, B and the hub converge on one balance.
public enum Walkthrough {
    public struct Outcome: Sendable {
        public let card: String
        public let expectedBalance: Int64
        public let balances: [String: Int64]
        public let convergenceMilliseconds: Int
        /// The hub's clearing report at the end (JSON).
        public let clearing: JSONValue
    }

    public static let card = "4600000000015"
    public static let phone = "+4915112345678"

    /// With `twoHubs`, store B syncs through a second hub process on the same database
    /// (`cluster.hubDatabaseURL`, PostgreSQL): the figures must not change.
    public static func run(_ cluster: LocalCluster, twoHubs: Bool = false, say: (String) -> Void) throws -> Outcome {
        let card = Self.card
        say("== starting hub and stores A (grocer) and B (fuel) on loopback")
        try cluster.startHub()
        let second = twoHubs ? try cluster.startAnotherHub() : nil
        try cluster.addStore(name: "A", partner: "grocer")
        try cluster.addStore(name: "B", partner: "fuel", via: second)
        if twoHubs { say("   store B syncs through a second hub process on the same database") }
        let a = try cluster.pos("A")
        let b = try cluster.pos("B")
        try cluster.wait(upTo: 15, for: "both stores online") {
            try a.call("node.status")["online"] == .bool(true) && b.call("node.status")["online"] == .bool(true)
        }
        say("   hub and both stores are up; both uplinks online (encrypted channel established)")

        say("\n== 1. register a member at store A")
        let member = try a.call("member.register", ["card": .string(card), "phone": .string(phone)])
        say("   A: member \(member["member"]?.stringValue ?? "?") registered with card \(card)")

        say("\n== 2. purchase of 2,000.00 at store A earns points (5 %, 1 point = 1.00)")
        let first = try a.call(
            "checkout.purchase", ["card": .string(card), "amount": 200_000, "lane": "1", "receipt": "A-0001"])
        try expect(first["pointsEarned"] == 100, "A earns 100 points", first)
        say("   A: earned \(first["pointsEarned"]!), balance \(first["balance"]!)")

        say("\n== 3. the stores sync through the hub")
        try cluster.wait(upTo: 15, for: "store B to see the points earned at A") {
            try b.call("account.balance", ["card": .string(card)])["balance"] == 100
        }
        say("   B: balance \(try b.call("account.balance", ["card": .string(card)])["balance"]!) (pulled from the hub)")

        say("\n== 4. store B redeems 40 points on a purchase of 1,000.00")
        let redeem = try b.call(
            "checkout.purchase",
            ["card": .string(card), "amount": 100_000, "redeem": 40, "lane": "1", "receipt": "B-0001"])
        try expect(redeem["pointsRedeemed"] == 40 && redeem["paid"] == 96_000, "B redeems 40 points", redeem)
        say(
            "   B: redeemed \(redeem["pointsRedeemed"]!) (rights granted by the hub), paid 960.00, "
                + "earned \(redeem["pointsEarned"]!), balance \(redeem["balance"]!)")
        try cluster.wait(upTo: 15, for: "B's redemption to sync") {
            try b.call("node.status")["unsyncedOperations"] == 0
                && a.call("account.balance", ["card": .string(card)])["balance"] == 108
        }
        say("   A: balance 108 after syncing B's purchase")

        say("\n== 5. store B is cut off from the hub and keeps selling")
        try cluster.cut("B")
        try cluster.wait(upTo: 15, for: "B to notice it is offline") {
            try b.call("node.status")["online"] == .bool(false)
        }
        say("   B: offline")
        let offline = try b.call(
            "checkout.purchase", ["card": .string(card), "amount": 50_000, "lane": "2", "receipt": "B-0002"])
        say("   B (offline): purchase of 500.00 earns \(offline["pointsEarned"]!), balance \(offline["balance"]!)")
        do {
            _ = try b.call(
                "checkout.purchase",
                ["card": .string(card), "amount": 60_000, "redeem": 100, "lane": "2", "receipt": "B-0003"])
            throw HarnessError("an offline redemption beyond the store's rights was accepted")
        } catch let error as PosError {
            try expect(
                error.code == 1003 && error.data?["redeemable"] == 25, "B refuses 100 points offline",
                .string(error.message))
            say("   B (offline): redeeming 100 refused: \(error.message)")
        }
        let covered = try b.call(
            "checkout.purchase",
            ["card": .string(card), "amount": 30_000, "redeem": 20, "lane": "2", "receipt": "B-0004"])
        say(
            "   B (offline): redeemed \(covered["pointsRedeemed"]!) of the points it holds, earned "
                + "\(covered["pointsEarned"]!), balance \(covered["balance"]!)")
        let retry = try b.call(
            "checkout.purchase",
            ["card": .string(card), "amount": 30_000, "redeem": 20, "lane": "2", "receipt": "B-0004"])
        try expect(
            retry["replayed"] == .bool(true) && retry["balance"] == covered["balance"],
            "a retried receipt is not applied twice", retry)
        say("   B (offline): the lane retried receipt B-0004; answered from the log, not applied twice")
        let atA = try a.call(
            "checkout.purchase", ["card": .string(card), "amount": 30_000, "lane": "1", "receipt": "A-0002"])
        say("   A (online): purchase of 300.00 earns \(atA["pointsEarned"]!), A now shows \(atA["balance"]!)")
        let status = try b.call("node.status")
        say("   B: \(status["unsyncedOperations"]!) operations waiting for the hub")

        say("\n== 6. store B reconnects")
        let expected: Int64 = 100 + 48 - 40 + 25 - 20 + 14 + 15
        let start = Date()
        try cluster.restore("B")
        try cluster.wait(upTo: 30, for: "A, B and the hub to converge on \(expected)") {
            try a.call("account.balance", ["card": .string(card)])["balance"] == .int(expected)
                && b.call("account.balance", ["card": .string(card)])["balance"] == .int(expected)
                && cluster.hubBalance(card: card) == expected
        }
        let elapsed = Int(Date().timeIntervalSince(start) * 1000)
        let balances: [String: Int64] = [
            "A": try a.call("account.balance", ["card": .string(card)])["balance"]?.intValue ?? -1,
            "B": try b.call("account.balance", ["card": .string(card)])["balance"]?.intValue ?? -1,
            "hub": try cluster.hubBalance(card: card) ?? -1,
        ]
        say("\n== converged in \(elapsed) ms after reconnecting")
        say("   A: \(balances["A"]!)   B: \(balances["B"]!)   hub: \(balances["hub"]!)   (expected \(expected))")

        say("\n== the hub's clearing report: points earned at one partner and spent at another")
        let clearing = try JSONValue.parse(
            Array(
                try cluster.runTool(
                    "hub",
                    ["report", "clearing"] + cluster.hubDataArguments + ["--from", "2000-01-01", "--to", "2100-12-31"]
                ).utf8))
        var rows: [JSONValue] = []
        if case .array(let netted)? = clearing["netted"] { rows = netted }
        for row in rows {
            let debtor = row["debtor"]?.stringValue ?? "?"
            let creditor = row["creditor"]?.stringValue ?? "?"
            say("   \(debtor) owes \(creditor) \(row["points"]?.intValue ?? 0) points (oldest points are spent first)")
        }
        return Outcome(
            card: card, expectedBalance: expected, balances: balances, convergenceMilliseconds: elapsed,
            clearing: clearing)
    }

    private static func expect(_ condition: Bool, _ what: String, _ got: JSONValue) throws {
        guard condition else { throw HarnessError("expected: \(what); got \(got)") }
    }
}

import EdgeNode
import Foundation
import Harness
import NodeKit
import Testing

/// A fresh cluster of real processes in its own temporary directory, stopped afterwards.
private func withCluster<T>(_ body: (LocalCluster) throws -> T) throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-\(UUID().uuidString)")
    let cluster = try LocalCluster(binaries: LocalCluster.locateBinaries(), workDirectory: directory)
    defer {
        cluster.stop()
        try? FileManager.default.removeItem(at: directory)
    }
    do {
        return try body(cluster)
    } catch {
        cluster.dumpLogs()
        throw error
    }
}

/// The PostgreSQL server the hub tests may use (`make test` starts one and sets this).
let postgresURL = ProcessInfo.processInfo.environment["LOYALTY_TEST_POSTGRES"]

/// Purchases acknowledged to lanes, shared by lane threads.
private final class Ledger: @unchecked Sendable {
    // @unchecked: every field is used under `lock`.
    private let lock = NSLock()
    private var acknowledged: Set<String> = []
    private var attempted: Set<String> = []
    func attempt(_ receipt: String) { lock.withLock { _ = attempted.insert(receipt) } }
    func acknowledge(_ receipt: String) { lock.withLock { _ = acknowledged.insert(receipt) } }
    var snapshot: (attempted: Set<String>, acknowledged: Set<String>) { lock.withLock { (attempted, acknowledged) } }
}

/// Every suite here starts real processes on loopback ports picked as free at that moment;
/// they run one at a time so that two clusters never race for the same port.
@Suite(.serialized) struct ProcessClusters {
    @Suite struct EndToEndTests {
        /// The walkthrough against the real executables: every balance asserted, A, B and the
        /// hub converged on the same figure after B's outage.
        @Test func aSaleAtOneStoreSyncsAndConvergesAcrossAnOutage() throws {
            var transcript: [String] = []
            let outcome = try withCluster { cluster in try Walkthrough.run(cluster) { transcript.append($0) } }
            #expect(outcome.expectedBalance == 142)
            #expect(outcome.balances == ["A": 142, "B": 142, "hub": 142])
            #expect(transcript.contains { $0.contains("redeeming 100 refused") })
            // FIFO: B's 40 redeemed online and its 20 redeemed offline both came from the oldest
            // points, the 100 earned at the grocer.
            #expect(outcome.clearing["balances"]?["fuel"] == 60 && outcome.clearing["balances"]?["grocer"] == -60)
        }

        @Test func badPosInputGetsClearErrorsAndTheNodeKeepsServing() throws {
            try withCluster { cluster in
                try cluster.startHub()
                let store = try cluster.addStore(name: "A", partner: "grocer")
                let pos = try cluster.pos("A")
                func code(_ line: String) throws -> Int64? {
                    try JSONValue.parse(Array(pos.raw(line).utf8))["error"]?["code"]?.intValue
                }
                #expect(try code("this is not json") == -32700)
                #expect(try code(#"{"jsonrpc":"1.0","id":1,"method":"node.status"}"#) == -32600)
                #expect(try code(#"{"jsonrpc":"2.0","id":1,"method":"no.such.method"}"#) == -32601)
                #expect(try code(#"{"jsonrpc":"2.0","id":1,"method":"checkout.purchase","params":[]}"#) == -32602)
                #expect(
                    try code(
                        #"{"jsonrpc":"2.0","id":1,"method":"checkout.purchase","params":{"card":"4600000000015"}}"#)
                        == -32602)
                #expect(
                    try code(#"{"jsonrpc":"2.0","id":1,"method":"member.register","params":{"card":"4600000000017"}}"#)
                        == 1002)
                #expect(
                    try code(#"{"jsonrpc":"2.0","id":1,"method":"member.identify","params":{"card":"4006381333931"}}"#)
                        == 1001)
                _ = try pos.call("member.register", ["card": "4600000000015"])
                let purchase =
                    #"{"jsonrpc":"2.0","id":1,"method":"checkout.purchase","params":{"card":"4600000000015","lane":"1","receipt":"x","amount":"#
                #expect(try code(purchase + "12.5}}") == 1006)
                #expect(try code(purchase + "-5}}") == 1006)
                #expect(try code(purchase + "99999999999999999999}}") == 1006)
                #expect(try code(purchase + "1000000000001}}") == 1006)
                #expect(try code(#"{"jsonrpc":"2.0","id":1,"method":"promo.activate","params":{}}"#) != nil)
                // An over-long line is refused and that connection closed; the node keeps serving others.
                let flood = try PosClient(address: store.pos)
                let answer = try? flood.raw(String(repeating: "x", count: 70_000))
                #expect(answer?.contains("-32600") ?? true)
                let status = try PosClient(address: store.pos).call("node.status")
                #expect(status["node"] == .int(Int64(store.id)))
                #expect(status["lastSequence"] == 1, "only the one valid registration was logged")
                // Every purchase that reached the method is timed, refused or not; made-up
                // method names get no window of their own.
                let purchases = status["latency"]?["checkout.purchase"]
                #expect(purchases?["requests"] == 5 && purchases?["total"] == 5)
                let p50 = purchases?["p50Ms"]?.doubleValue ?? -1
                let p99 = purchases?["p99Ms"]?.doubleValue ?? -1
                #expect(p50 >= 0 && p50 <= p99 && p99 <= purchases?["maxMs"]?.doubleValue ?? -1)
                #expect(status["latency"]?["member.register"]?["requests"] == 2)
                #expect(status["latency"]?["no.such.method"] == nil)
            }
        }

        @Test func aStalledHandshakeIsDropped() throws {
            try withCluster { cluster in
                cluster.handshakeTimeoutMilliseconds = 500
                try cluster.startHub()
                let silent = try BlockingLineClient(connectTo: cluster.hubAddress, timeoutSeconds: 5)
                let start = Date()
                #expect(throws: BlockingLineClient.Failure.self) { _ = try silent.readLine() }
                let waited = Date().timeIntervalSince(start)
                #expect(waited < 4, "the hub closed the silent connection after \(waited) s")
                #expect(cluster.hubLog().contains("handshake not completed in time"))
            }
        }

        @Test func anAcknowledgedPurchaseSurvivesKillNine() throws {
            try withCluster { cluster in
                try cluster.startHub()
                try cluster.addStore(name: "A", partner: "grocer")
                try cluster.cut("A")  // keep it offline: the replica alone must hold the sale
                let pos = try cluster.pos("A")
                _ = try pos.call("member.register", ["card": "4600000000015"])
                for index in 0..<20 {
                    _ = try pos.call(
                        "checkout.purchase",
                        ["card": "4600000000015", "amount": 20_000, "lane": "1", "receipt": .string("k\(index)")])
                }
                try cluster.kill9("A")
                try cluster.restartStore("A")
                let after = try cluster.pos("A").call("account.balance", ["card": "4600000000015"])
                #expect(after["balance"] == 200)
                try cluster.restore("A")
                try cluster.wait(upTo: 20, for: "the hub to receive the sales after the restart") {
                    try cluster.hubBalance(card: "4600000000015") == 200
                }
            }
        }

        @Test func revokingAStoreClosesItsLiveSessionAndRefusesItsNextHandshake() throws {
            try withCluster { cluster in
                try cluster.startHub()
                try cluster.addStore(name: "A", partner: "grocer")
                let pos = try cluster.pos("A")
                try cluster.wait(upTo: 15, for: "store A online") {
                    try pos.call("node.status")["online"] == .bool(true)
                }
                try cluster.revoke("A")
                try cluster.wait(upTo: 15, for: "the hub to close the revoked store's session") {
                    cluster.hubLog().contains("store key revoked")
                }
                try cluster.wait(upTo: 15, for: "the hub to refuse the revoked key") {
                    cluster.hubLog().contains("refused store key")
                }
                #expect(try pos.call("node.status")["online"] == .bool(false))
                // The store still sells offline; nothing reaches the hub.
                _ = try pos.call("member.register", ["card": "4600000000015"])
                usleep(500_000)
                #expect(try cluster.hubBalance(card: "4600000000015") == nil)
            }
        }
    }

    /// The hub on PostgreSQL, run when `LOYALTY_TEST_POSTGRES` holds a server's address
    /// (`make test` starts one). Each test keeps its tables in a schema of its own.
    @Suite(.enabled(if: postgresURL != nil, "needs LOYALTY_TEST_POSTGRES (make test starts a PostgreSQL)"))
    struct PostgresHubTests {
        static func database() -> String {
            postgresURL! + "?schema=e2e_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        }

        @Test func theWalkthroughGivesTheSameFiguresWithItsStoresSplitBetweenTwoHubsOnOnePostgreSQL() throws {
            let outcome = try withCluster { cluster in
                cluster.hubDatabaseURL = Self.database()
                return try Walkthrough.run(cluster, twoHubs: true) { _ in }
            }
            #expect(outcome.balances == ["A": 142, "B": 142, "hub": 142])
            #expect(outcome.clearing["balances"]?["fuel"] == 60 && outcome.clearing["balances"]?["grocer"] == -60)
        }

        @Test func aHubKilledAndRestartedLosesNothingAndItsStoresResume() throws {
            try withCluster { cluster in
                cluster.hubDatabaseURL = Self.database()
                try cluster.startHub()
                let second = try cluster.startAnotherHub()
                try cluster.addStore(name: "A", partner: "grocer")
                try cluster.addStore(name: "B", partner: "grocer", via: second)
                let a = try cluster.pos("A")
                let b = try cluster.pos("B")
                let card = Walkthrough.card
                _ = try a.call("member.register", ["card": .string(card), "phone": .string(Walkthrough.phone)])
                var expected: Int64 = 0
                func buy(_ pos: PosClient, _ receipt: String) throws {
                    let answer = try pos.call(
                        "checkout.purchase",
                        ["card": .string(card), "amount": 50_000, "lane": "1", "receipt": .string(receipt)])
                    expected += answer["pointsEarned"]?.intValue ?? 0
                }
                for index in 1...5 { try buy(a, "A-\(index)") }
                try cluster.wait(upTo: 20, for: "B to see A's sales through the other hub") {
                    try b.call("account.balance", ["card": .string(card)])["balance"]?.intValue == expected
                }
                try cluster.restartHub(0)
                for index in 6...10 { try buy(a, "A-\(index)") }
                for index in 1...5 { try buy(b, "B-\(index)") }
                try cluster.wait(upTo: 30, for: "both stores and the database to agree after the restart") {
                    try a.call("node.status")["unsyncedOperations"] == 0
                        && b.call("node.status")["unsyncedOperations"] == 0
                        && a.call("account.balance", ["card": .string(card)])["balance"]?.intValue == expected
                        && b.call("account.balance", ["card": .string(card)])["balance"]?.intValue == expected
                        && cluster.hubBalance(card: card) == expected
                }
                #expect(expected > 0)
            }
        }
    }

    @Suite struct EdgeRobustnessTests {
        @Test func thePosAPIIsServedOverAUnixSocketToo() throws {
            try withCluster { cluster in
                try cluster.startHub()
                let store = try cluster.addStore(name: "A", partner: "grocer")
                let local = try PosClient(socketPath: store.posSocket)
                _ = try local.call("member.register", ["card": "4600000000015"])
                #expect(
                    try PosClient(address: store.pos).call("account.balance", ["card": "4600000000015"])["balance"] == 0
                )
            }
        }

        /// kill -9 the edge while eight lanes are buying, several times: every purchase a lane
        /// was told succeeded is there exactly once, and nothing is half-applied.
        @Test func killNineUnderLoadLosesNothingAcknowledgedAndAppliesNothingTwice() throws {
            try withCluster { cluster in
                try cluster.startHub()
                let store = try cluster.addStore(name: "A", partner: "grocer")
                _ = try PosClient(address: store.pos).call("member.register", ["card": "4600000000015"])
                let ledger = Ledger()
                for round in 0..<3 {
                    var lanes: [Thread] = []
                    for lane in 0..<8 {
                        let thread = Thread {
                            guard let client = try? PosClient(address: store.pos, timeoutSeconds: 5) else { return }
                            for index in 0..<10_000 {
                                let receipt = "r\(round)-\(lane)-\(index)"
                                ledger.attempt(receipt)
                                guard
                                    let answer = try? client.call(
                                        "checkout.purchase",
                                        [
                                            "card": "4600000000015", "amount": 20_000, "lane": .string("\(lane)"),
                                            "receipt": .string(receipt),
                                        ])
                                else { return }
                                if answer["pointsEarned"] == 10 { ledger.acknowledge(receipt) }
                            }
                        }
                        lanes.append(thread)
                        thread.start()
                    }
                    usleep(UInt32.random(in: 200_000...700_000))
                    try cluster.kill9("A")
                    while lanes.contains(where: { $0.isExecuting }) { usleep(10_000) }
                    try cluster.restartStore("A")
                }
                let (attempted, acknowledged) = ledger.snapshot
                #expect(acknowledged.count > 50, "the lanes got answers before each crash")
                let client = try PosClient(address: store.pos)
                var applied = 0
                for receipt in attempted.sorted() {
                    let parts = receipt.split(separator: "-")
                    let answer = try client.call(
                        "checkout.purchase",
                        [
                            "card": "4600000000015", "amount": 20_000, "lane": .string(String(parts[1])),
                            "receipt": .string(receipt),
                        ])
                    if answer["replayed"] == .bool(true) {
                        applied += 1
                    } else {
                        #expect(!acknowledged.contains(receipt), "acknowledged purchase \(receipt) was lost")
                    }
                }
                #expect(applied >= acknowledged.count)
                // Every attempted purchase is now in exactly once; the balance agrees with the log.
                let balance = try client.call("account.balance", ["card": "4600000000015"])["balance"]
                #expect(balance == .int(Int64(attempted.count * 10)))
            }
        }

        @Test func aLaneThatDisconnectsMidRequestLosesNothingAndOthersAreServed() throws {
            try withCluster { cluster in
                try cluster.startHub()
                let store = try cluster.addStore(name: "A", partner: "grocer")
                let pos = try PosClient(address: store.pos)
                _ = try pos.call("member.register", ["card": "4600000000015"])
                do {
                    let leaving = try BlockingLineClient(connectTo: store.pos)
                    try leaving.send(
                        line:
                            #"{"jsonrpc":"2.0","id":1,"method":"checkout.purchase","params":{"card":"4600000000015","amount":20000,"lane":"9","receipt":"gone"}}"#
                    )
                }  // closed before the answer
                usleep(200_000)
                let retry = try pos.call(
                    "checkout.purchase", ["card": "4600000000015", "amount": 20_000, "lane": "9", "receipt": "gone"])
                #expect(retry["replayed"] == .bool(true), "the purchase was recorded once; the retry gets its answer")
            }
        }

        @Test func aFloodFromOneLaneDoesNotStopTheOthers() throws {
            try withCluster { cluster in
                try cluster.startHub()
                let store = try cluster.addStore(name: "A", partner: "grocer")
                let flood = try BlockingLineClient(connectTo: store.pos)
                let line = #"{"jsonrpc":"2.0","id":1,"method":"node.status"}"#
                for _ in 0..<5_000 { try flood.send(line: line) }
                let start = Date()
                let status = try PosClient(address: store.pos, timeoutSeconds: 10).call("node.status")
                #expect(status["node"] == .int(Int64(store.id)))
                #expect(Date().timeIntervalSince(start) < 5)
                // The flooding lane was paused, not dropped: every one of its requests is answered.
                var answered = 0
                while answered < 5_000, (try? flood.readLine())?.contains("\"result\"") == true { answered += 1 }
                #expect(answered == 5_000)
            }
        }
    }

    @Suite struct ScannerTests {
        @Test func aScanOnALaneReachesThatLanesPOSAsANotification() throws {
            try withCluster { cluster in
                try cluster.startHub()
                let fifo = cluster.workDirectory.appendingPathComponent("lane1.scan").path
                let scannerPort = try LocalCluster.freePort()
                cluster.extraStoreArguments = [
                    "--scanner", "1=fifo:\(fifo)", "--scanner", "2=tcp:127.0.0.1:\(scannerPort)",
                ]
                let store = try cluster.addStore(name: "A", partner: "grocer")
                _ = try PosClient(address: store.pos).call("member.register", ["card": "4600000000015"])
                let lane1 = try PosClient(address: store.pos)
                #expect(try lane1.call("lane.attach", ["lane": "1"])["lane"] == "1")
                let lane2 = try PosClient(address: store.pos)
                _ = try lane2.call("lane.attach", ["lane": "2"])

                let writer = try #require(FileHandle(forWritingAtPath: fifo))
                writer.write(Data("LOYALTY:4600000000015\n".utf8))
                let identified = try lane1.nextNotification()
                #expect(identified["method"] == "scan.identified")
                #expect(identified["params"]?["member"]?["card"] == "4600000000015")
                writer.write(Data("4600000000017\n".utf8))
                let refused = try lane1.nextNotification()
                #expect(refused["method"] == "scan.refused" && refused["params"]?["error"]?["code"] == 1002)
                try writer.close()

                let network = try BlockingLineClient(connectTo: SocketAddress(host: "127.0.0.1", port: scannerPort))
                try network.send(line: "4006381333931")
                let unknown = try lane2.nextNotification()
                #expect(unknown["method"] == "scan.refused" && unknown["params"]?["error"]?["code"] == 1001)
                #expect(unknown["params"]?["lane"] == "2")
            }
        }
    }

    @Suite struct DeploymentTests {
        @Test func aStoreRunsFromItsConfigFileWithFlagsOverridingItAndLogsJSON() throws {
            try withCluster { cluster in
                cluster.storesUseConfigFile = true
                try cluster.startHub()
                let store = try cluster.addStore(name: "A", partner: "grocer")
                let pos = try PosClient(address: store.pos)
                try cluster.wait(upTo: 15, for: "store A online") {
                    try pos.call("node.status")["online"] == .bool(true)
                }
                let log = try String(contentsOf: cluster.workDirectory.appendingPathComponent("A.log"), encoding: .utf8)
                let lines = log.split(separator: "\n").filter { !$0.isEmpty }
                #expect(!lines.isEmpty)
                for line in lines {
                    let entry = try JSONValue.parse(Array(line.utf8))
                    #expect(entry["level"] != nil && entry["message"] != nil && entry["node"] == .string("\(store.id)"))
                }
            }
        }
    }

    @Suite struct RulesDistributionTests {
        @Test func publishedRulesReachEveryStoreAndSetEachPartnersEconomics() throws {
            try withCluster { cluster in
                try cluster.startHub()
                try cluster.addStore(name: "A", partner: "grocer")
                try cluster.addStore(name: "B", partner: "fuel")
                let printed = try cluster.publishRules(
                    """
                    [default]
                    accrual_bp = 500
                    [partners.fuel]
                    accrual_bp = 100
                    """)
                #expect(printed == "published rules version 1")
                let a = try cluster.pos("A")
                let b = try cluster.pos("B")
                _ = try a.call("member.register", ["card": "4600000000015", "phone": "+4915112345678"])
                // Rules travel with the next session; reconnect both stores to pick them up now.
                for store in ["A", "B"] {
                    try cluster.cut(store)
                    try cluster.restore(store)
                }
                try cluster.wait(upTo: 20, for: "stores to apply the rules and sync the member") {
                    (try? b.call("member.identify", ["phone": "+4915112345678"])) != nil
                        && (try? b.call(
                            "checkout.quote", ["card": "4600000000015", "amount": 100_000]))?["pointsEarned"] == 10
                }
                let atFuel = try b.call(
                    "checkout.purchase", ["card": "4600000000015", "amount": 100_000, "lane": "1", "receipt": "f1"])
                #expect(atFuel["pointsEarned"] == 10, "fuel gives 1 %")
                let atGrocer = try a.call(
                    "checkout.purchase", ["card": "4600000000015", "amount": 100_000, "lane": "1", "receipt": "g1"])
                #expect(atGrocer["pointsEarned"] == 50, "grocer gets the default 5 %")
                #expect(try a.call("node.status")["replica"] == "whole", "the whole feed by default")
            }
        }
    }

    @Suite struct PromoCodeTests {
        @Test func aPromoCodeIsCreditedThroughTheHubOnceAndRefusedOffline() throws {
            try withCluster { cluster in
                try cluster.startHub()
                try cluster.addStore(name: "A", partner: "grocer")
                try cluster.addStore(name: "B", partner: "fuel")
                let a = try cluster.pos("A")
                let b = try cluster.pos("B")
                _ = try a.call("member.register", ["card": "4600000000015"])
                let code = try #require(try cluster.createPromoCodes(points: 500, count: 1).first)
                try cluster.wait(upTo: 15, for: "both stores online and the member at B") {
                    try a.call("node.status")["online"] == .bool(true)
                        && (try? b.call("member.identify", ["card": "4600000000015"])) != nil
                }
                let credited = try a.call("promo.activate", ["card": "4600000000015", "code": .string(code)])
                #expect(credited["pointsCredited"] == 500 && credited["promoBalance"] == 500)
                // Promo points pay at checkout: the store gets their rights from the hub.
                let paid = try a.call(
                    "checkout.purchase",
                    ["card": "4600000000015", "amount": 100_000, "redeemPromo": 250, "lane": "1", "receipt": "pr1"])
                #expect(paid["promoRedeemed"] == 250 && paid["paid"] == 75_000)
                #expect(try a.call("account.balance", ["card": "4600000000015"])["promoBalance"] == 250)
                let again = try #require(throws: PosError.self) {
                    _ = try b.call("promo.activate", ["card": "4600000000015", "code": .string(code)])
                }
                #expect(again.code == 1013 && again.message.contains("already used"))
                try cluster.cut("B")
                try cluster.wait(upTo: 15, for: "B offline") { try b.call("node.status")["online"] == .bool(false) }
                let offline = try #require(throws: PosError.self) {
                    _ = try b.call("promo.activate", ["card": "4600000000015", "code": "ANYTHING"])
                }
                #expect(offline.code == 1005)
            }
        }
    }

    @Suite struct PartnerGroupFeedTests {
        /// Real processes: with partner-group feeds a pharmacy holds none of the grocer's
        /// members, yet serves one the moment they show up (online), by card or by phone;
        /// offline it answers that the member is unknown here; the grocer sees the purchase.
        @Test func aStoreServesAnotherGroupsMemberByAskingTheHub() throws {
            try withCluster { cluster in
                try cluster.startHub()
                _ = try cluster.publishRules(
                    """
                    [feed]
                    scope = "partner-group"
                    [feed.groups]
                    north = ["grocer", "fuel"]
                    """)
                try cluster.addStore(name: "A", partner: "grocer")
                try cluster.addStore(name: "B", partner: "fuel")
                try cluster.addStore(name: "C", partner: "pharmacy")
                let (a, b, c) = (try cluster.pos("A"), try cluster.pos("B"), try cluster.pos("C"))
                _ = try a.call("member.register", ["card": "4600000000015", "phone": "+4915112345678"])
                _ = try a.call("member.register", ["card": "4600000000022", "phone": "+4915112345679"])
                _ = try a.call(
                    "checkout.purchase", ["card": "4600000000015", "amount": 100_000, "lane": "1", "receipt": "a1"])
                // Through its feed: node.status asks the hub nothing, where a balance or identify
                // of a member not yet held would look them up and leave the watermark behind.
                try cluster.wait(upTo: 20, for: "the fuel station's feed to bring the grocer's members") {
                    (try b.call("node.status")["members"]?.intValue ?? 0) == 2
                }
                try cluster.wait(upTo: 20, for: "and the grocer's purchase") {
                    ((try? b.call("account.balance", ["card": "4600000000015"]))?["balance"]?.intValue ?? 0) > 0
                }
                let fuelWatermark = try #require(try b.call("node.status")["feedWatermark"]?.intValue)
                try cluster.wait(upTo: 20, for: "the pharmacy to read the feed as far") {
                    (try c.call("node.status")["feedWatermark"]?.intValue ?? 0) >= fuelWatermark
                }
                let status = try c.call("node.status")
                #expect(status["members"] == 0, "the grocer's members are not the pharmacy's")
                #expect(status["replica"] == "partner-group")

                // The member shops at the pharmacy: it asks the hub and serves them.
                let balance = try b.call("account.balance", ["card": "4600000000015"])["balance"]
                let found = try c.call("member.identify", ["card": "4600000000015"])
                #expect(found["balance"] == balance, "\(found) vs \(String(describing: balance))")
                #expect(try c.call("node.status")["members"] == 1)
                let atPharmacy = try c.call(
                    "checkout.purchase", ["card": "4600000000015", "amount": 100_000, "lane": "1", "receipt": "c1"])
                try cluster.wait(upTo: 20, for: "the grocer to see the pharmacy's purchase") {
                    try a.call("account.balance", ["card": "4600000000015"])["balance"]?.intValue
                        == (balance?.intValue ?? 0) + (atPharmacy["pointsEarned"]?.intValue ?? 0)
                }

                // Offline, a member the pharmacy does not hold is unknown there, with a clear error.
                try cluster.cut("C")
                try cluster.wait(upTo: 15, for: "C offline") { try c.call("node.status")["online"] == .bool(false) }
                let unknown = try #require(throws: PosError.self) {
                    _ = try c.call("member.identify", ["phone": "+4915112345679"])
                }
                #expect(unknown.code == 1001)
                // Back online, the same member is found by phone.
                try cluster.restore("C")
                try cluster.wait(upTo: 20, for: "C to find the member by phone through the hub") {
                    (try? c.call("member.identify", ["phone": "+4915112345679"]))?["card"] == "4600000000022"
                }
                // The operator sees the stores' lookups among the hub's metrics (the pharmacy's
                // two, and any the fuel station made while its feed had not caught up).
                let metrics = try ConsoleClient(port: cluster.consolePort).get("/metrics").body
                let lookups = metrics.split(separator: "\n").first {
                    $0.hasPrefix(#"hub_member_lookups_total{outcome="found"}"#)
                }
                #expect((lookups?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 2, "\(metrics)")
            }
        }
    }
}

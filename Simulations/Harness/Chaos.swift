import EdgeNode
import Foundation
import NodeKit
import SyncProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// The real-process chaos harness: a hub and stores on loopback, each store's uplink behind
/// a fault proxy (cuts, resets, latency, bandwidth, one-way partitions), POS load through
/// the real JSON-RPC sockets, store processes killed with SIGKILL and restarted; then the
/// links heal and the same invariants as the simulator's are checked from the nodes'
/// databases. Bounded in time and in faults; loopback only; stops by itself.
public enum Chaos {
    public struct Options: Sendable {
        public var seed: UInt64
        public var stores: Int
        public var seconds: Double
        public var lanesPerStore = 2
        public var members = 24
        /// Faults at most, spread over the run.
        public var maxFaults = 40
        public init(seed: UInt64, stores: Int = 3, seconds: Double = 20) {
            self.seed = seed
            self.stores = stores
            self.seconds = seconds
        }
    }

    public struct Outcome: Sendable {
        public var acknowledged = 0
        public var refused = 0
        /// Requests whose answer was lost with a killed store (retried under the same receipt).
        public var unanswered = 0
        public var retriesAnswered = 0
        /// Retries answered with a refusal (a redemption whose first attempt never committed
        /// may find too few points now): answered, clearly, not lost.
        public var retriesRefused = 0
        public var faults: [String] = []
        public var kills = 0
        public var convergenceSeconds = 0.0
        public var hubEntries = 0
    }

    /// What the lanes saw, shared by their threads.
    final class Record: @unchecked Sendable {
        // @unchecked: every field under `lock`.
        let lock = NSLock()
        var acknowledged: [(store: UInt32, key: String, sequence: Int64)] = []
        var refused = 0
        var unanswered = 0
        var retriesAnswered = 0
        var retriesRefused = 0
        /// A retry under the same receipt answered "receipt used for a different purchase".
        var conflicts: [String] = []
    }

    static func card(_ index: Int) -> String { CardNumber.issued(prefix: "48", serial: index).digits }

    public static func run(_ cluster: LocalCluster, _ options: Options, say: (String) -> Void) throws -> Outcome {
        var random = SeededRandom(seed: options.seed)
        try cluster.startHub()
        var handles: [LocalCluster.StoreHandle] = []
        for index in 0..<options.stores {
            handles.append(try cluster.addStore(name: "S\(index + 1)", partner: index % 2 == 0 ? "grocer" : "fuel"))
        }
        try cluster.wait(upTo: 20, for: "every store online") {
            try handles.allSatisfy { try cluster.pos($0.name).call("node.status")["online"] == .bool(true) }
        }
        for member in 0..<options.members {
            _ = try cluster.pos(handles[member % handles.count].name).call(
                "member.register", ["card": .string(card(member))])
        }
        try cluster.wait(upTo: 30, for: "every member known at every store") {
            try handles.allSatisfy { handle in
                let pos = try cluster.pos(handle.name)
                return (0..<options.members).allSatisfy { member in
                    (try? pos.call("account.balance", ["card": .string(card(member))])) != nil
                }
            }
        }
        say("chaos: \(options.stores) stores, \(options.members) members, \(options.seconds) s, seed \(options.seed)")

        let record = Record()
        let deadline = Date().addingTimeInterval(options.seconds)
        let group = DispatchGroup()
        for handle in handles {
            for lane in 1...options.lanesPerStore {
                group.enter()
                let laneSeed = options.seed &* 31 &+ UInt64(handle.id) &* 7 &+ UInt64(lane)
                Thread {
                    defer { group.leave() }
                    runLane(
                        handle, lane: lane, seed: laneSeed, members: options.members, until: deadline, record: record)
                }.start()
            }
        }

        // Faults, one every 0.5–2 s, each healed after a few seconds.
        var outcome = Outcome()
        var killed: [String: Date] = [:]
        var healing: [(at: Date, store: String)] = []
        while Date() < deadline {
            usleep(UInt32(random.int(500_000...2_000_000)))
            let now = Date()
            for (store, at) in killed where at <= now {
                try cluster.restartStore(store)
                killed[store] = nil
            }
            for entry in healing where entry.at <= now {
                try cluster.restore(entry.store)
                try cluster.degrade(entry.store, LinkFaults())
            }
            healing.removeAll { $0.at <= now }
            guard outcome.faults.count < options.maxFaults, now < deadline.addingTimeInterval(-2) else { continue }
            let store = handles[random.int(0...(handles.count - 1))].name
            guard killed[store] == nil else { continue }
            let until = now.addingTimeInterval(Double(random.int(1_000...4_000)) / 1000)
            let fault: String
            switch random.int(0...5) {
            case 0:
                try cluster.cut(store)
                fault = "cut \(store)"
            case 1:
                try cluster.resetLink(store)
                fault = "reset \(store)"
            case 2:
                let latency = UInt64(random.int(20...400))
                try cluster.degrade(store, LinkFaults(latencyMilliseconds: latency))
                fault = "latency \(latency) ms \(store)"
            case 3:
                let bandwidth = UInt64(random.int(2_000...50_000))
                try cluster.degrade(store, LinkFaults(bytesPerSecond: bandwidth))
                fault = "bandwidth \(bandwidth) B/s \(store)"
            case 4:
                let up = random.int(0...1) == 0
                try cluster.degrade(store, LinkFaults(dropUp: up, dropDown: !up))
                fault = "one-way partition (\(up ? "store to hub" : "hub to store") lost) \(store)"
            default:
                try cluster.kill9(store)
                killed[store] = until
                outcome.kills += 1
                fault = "kill -9 \(store)"
            }
            if !fault.hasPrefix("kill") { healing.append((until, store)) }
            outcome.faults.append(fault)
            say("  fault: \(fault)")
        }
        group.wait()

        // Heal everything, then wait for every replica to match the hub.
        for handle in handles {
            try cluster.restore(handle.name)
            try cluster.degrade(handle.name, LinkFaults())
            if !cluster.isRunning(handle.name) { try cluster.restartStore(handle.name) }
        }
        let healed = Date()
        try cluster.wait(upTo: 60, for: "every replica to converge with the hub") {
            try converged(cluster, handles)
        }
        outcome.convergenceSeconds = Date().timeIntervalSince(healed)
        try check(cluster, handles, record: record, outcome: &outcome)
        record.lock.withLock {
            outcome.acknowledged = record.acknowledged.count
            outcome.refused = record.refused
            outcome.unanswered = record.unanswered
            outcome.retriesAnswered = record.retriesAnswered
            outcome.retriesRefused = record.retriesRefused
        }
        say(
            "chaos: \(outcome.acknowledged) purchases acknowledged, \(outcome.refused) refused, "
                + "\(outcome.unanswered) answers lost with a killed store (on retry \(outcome.retriesAnswered) answered, "
                + "\(outcome.retriesRefused) refused), "
                + "\(outcome.faults.count) faults (\(outcome.kills) kill -9), converged "
                + String(format: "%.1f s", outcome.convergenceSeconds) + " after healing; every invariant held")
        return outcome
    }

    /// One POS lane: purchases until the deadline; a request whose answer was lost (the
    /// store died) is retried under the same receipt until the store answers.
    static func runLane(
        _ handle: LocalCluster.StoreHandle, lane: Int, seed: UInt64, members: Int, until deadline: Date, record: Record
    ) {
        var random = SeededRandom(seed: seed)
        var client: PosClient?
        var number = 0
        var retrying: [String: JSONValue]?
        while Date() < deadline || retrying != nil {
            if client == nil {
                client = try? PosClient(address: handle.pos, timeoutSeconds: 5)
                if client == nil {
                    if Date() > deadline.addingTimeInterval(30) { return }
                    usleep(100_000)
                    continue
                }
            }
            let params: [String: JSONValue]
            if let pending = retrying {
                params = pending
            } else {
                number += 1
                var fresh: [String: JSONValue] = [
                    "card": .string(card(random.int(0...(members - 1)))),
                    "amount": .int(Int64(random.int(100...50_000))),
                    "lane": .string("\(lane)"), "receipt": .string("C\(handle.id)-\(lane)-\(number)"),
                ]
                if random.int(0...4) == 0 { fresh["redeem"] = .int(Int64(random.int(1...30))) }
                params = fresh
            }
            do {
                let answer = try client!.call("checkout.purchase", params)
                record.lock.withLock {
                    record.acknowledged.append(
                        (
                            handle.id, "\(lane)/\(params["receipt"]?.stringValue ?? "")",
                            answer["sequence"]?.intValue ?? -1
                        ))
                    if retrying != nil { record.retriesAnswered += 1 }
                }
                retrying = nil
            } catch let error as PosError {
                record.lock.withLock {
                    if error.code == 1008 { record.conflicts.append("\(handle.name) \(params)") }
                    record.refused += 1
                    if retrying != nil { record.retriesRefused += 1 }
                }
                retrying = nil
            } catch {
                // The connection broke with the request in flight: its outcome is unknown.
                if retrying == nil { record.lock.withLock { record.unanswered += 1 } }
                retrying = params
                client = nil
                usleep(100_000)
            }
        }
    }

    static func slots(_ path: String) throws -> [[SQLValue]] {
        let db = try SQLiteConnection(path: path, readOnly: true)
        defer { db.close() }
        return try db.query("SELECT member, account, kind, from_node, to_node, value FROM slots ORDER BY 1, 2, 3, 4, 5")
            .map(\.values)
    }

    static func converged(_ cluster: LocalCluster, _ handles: [LocalCluster.StoreHandle]) throws -> Bool {
        for handle in handles {
            let status = try cluster.pos(handle.name).call("node.status")
            guard status["online"] == .bool(true), status["unsyncedOperations"] == 0 else { return false }
        }
        let hub = try slots(cluster.hubDatabase)
        return try handles.allSatisfy { try slots(cluster.storeDatabase($0.name)) == hub }
    }

    static func check(
        _ cluster: LocalCluster, _ handles: [LocalCluster.StoreHandle], record: Record, outcome: inout Outcome
    ) throws {
        if let conflict = record.lock.withLock({ record.conflicts.first }) {
            throw HarnessError("a retry under the same receipt was refused as a conflict: \(conflict)")
        }
        let db = try SQLiteConnection(path: cluster.hubDatabase, readOnly: true)
        defer { db.close() }
        var seen: [String: Int] = [:]
        var figures: [MemberID: Int64] = [:]
        var entries = 0
        for row in try db.query("SELECT entry FROM entries") {
            let entry = try LogEntry(decoding: row.blob(0))
            entries += 1
            if !entry.idempotencyKey.isEmpty {
                seen["\(entry.origin.rawValue)|\(entry.idempotencyKey)", default: 0] += 1
            }
            if case .purchase(let purchase) = entry.operation {
                figures[purchase.member, default: 0] += Int64(purchase.pointsEarned) - Int64(purchase.pointsRedeemed)
            }
        }
        outcome.hubEntries = entries
        for (store, key, _) in record.lock.withLock({ record.acknowledged }) {
            guard seen["\(store)|\(key)"] == 1 else {
                throw HarnessError(
                    "acknowledged purchase \(key) of store \(store) is at the hub \(seen["\(store)|\(key)"] ?? 0) times"
                )
            }
        }
        if let doubled = seen.first(where: { $0.value > 1 }) {
            throw HarnessError("operation \(doubled.key) is at the hub \(doubled.value) times")
        }
        let nodes = [NodeID.hub] + handles.map { NodeID($0.id) }
        for (member, balance) in figures {
            let counter = try CounterSlots.load(db, member: member, account: .main)
            guard counter.balance == balance else {
                throw HarnessError("member \(member): balance \(counter.balance) at the hub, the log says \(balance)")
            }
            guard counter.balance >= 0 else { throw HarnessError("member \(member) overdrawn: \(counter.balance)") }
            let rights = nodes.reduce(Int64(0)) { $0 + counter.rights($1) }
            guard rights == counter.balance else {
                throw HarnessError("member \(member): rights sum \(rights), balance \(counter.balance)")
            }
        }
    }
}

/// A small seeded generator for the harness (its runs involve real processes and timing,
/// so a seed fixes the choices, not the interleaving).
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }
}

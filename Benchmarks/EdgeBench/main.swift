// Store-node figures against the physical limit of the same disk, printed and (with
// BENCH_JSON=path) written as JSON. Run with `make bench-edge` (release build).
//  1. A replica of 1,000,000 members: resident memory and start-up time of the real `edge`.
//  2. checkout.purchase from 8 concurrent lanes against raw SQLite group commit (WAL,
//     synchronous=FULL, 8 rows per transaction: what 8 waiting lanes allow) on the same disk,
//     and against 8 writer threads that each wait for their row to be durable (group commit
//     with the same hand-offs as the node, without JSON, TCP or ledger work).
//     BENCH_LANES and BENCH_MEMBERS change the lane count and replica size.
//  3. Latency at a steady 1,000 purchases/s.
import EdgeNode
import Foundation
import NodeKit
import SyncProtocol

#if canImport(Glibc)
    import Glibc
#endif

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
let work = URL(
    fileURLWithPath: ProcessInfo.processInfo.environment["BENCH_DIR"] ?? FileManager.default.currentDirectoryPath
)
.appendingPathComponent(".build/bench-edge-\(getpid())")
try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: work) }
var rows: [(String, Double, String, String)] = []
@MainActor func report(_ name: String, _ value: Double, _ unit: String, _ note: String = "") {
    rows.append((name, value, unit, note))
    let figure = value >= 100 ? String(Int64(value.rounded())) : String(format: "%.2f", value)
    print(
        name.padding(toLength: 52, withPad: " ", startingAt: 0)
            + String(repeating: " ", count: max(0, 12 - figure.count))
            + figure + "  " + unit.padding(toLength: 12, withPad: " ", startingAt: 0) + note)
}

func card(_ index: Int) -> String { CardNumber.issued(prefix: "46", serial: index).digits }

// MARK: 1. A million members

let members = Int(ProcessInfo.processInfo.environment["BENCH_MEMBERS"] ?? "1000000")!
let data = work.appendingPathComponent("store")
try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
do {
    let db = try EdgeLedger.open(path: data.appendingPathComponent("edge.sqlite").path)
    let start = now()
    try db.transaction {
        for index in 0..<members {
            let id = MemberID(origin: NodeID(9), serial: UInt32(index + 1))
            try db.run(
                "INSERT INTO members(id, card, phone_hash, referrer, registered_hlc) VALUES(?, ?, NULL, NULL, 1)",
                [.uint(id.rawValue), .text(card(index))])
            try db.run(
                "INSERT INTO slots(member, account, kind, from_node, to_node, value) VALUES(?, 0, 0, 9, 9, 100)",
                [.uint(id.rawValue)])
        }
    }
    db.close()
    print("replica of \(members) members written in \(String(format: "%.1f", now() - start)) s")
}
let storeKey = work.appendingPathComponent("store.key").path
_ = try KeyFile.generate(at: storeKey)
let hubKey = SigningKeyPair.generate().publicKey.hex

func freePort() -> UInt16 { SocketAddress.freeLoopbackPort()! }

func residentKilobytes(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return -1 }
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
}

let posPort = freePort()
let edge = Process()
edge.executableURL = binaries.appendingPathComponent("edge")
edge.arguments = [
    "run", "--node", "1", "--data", data.path, "--key", storeKey, "--pos", "127.0.0.1:\(posPort)",
    "--hub", "127.0.0.1:\(freePort())", "--hub-key", hubKey, "--log-level", "error",
]
let startedAt = now()
try edge.run()
defer {
    edge.terminate()
    edge.waitUntilExit()
}
var ready: PosClient?
while ready == nil && now() - startedAt < 30 {
    if let client = try? PosClient(address: SocketAddress(host: "127.0.0.1", port: posPort)),
        (try? client.call("node.status")) != nil
    {
        ready = client
    } else {
        usleep(5_000)
    }
}
guard let probe = ready else { fatalError("edge did not start") }
report("start-up with \(members) members (spawn to first answer)", now() - startedAt, "s", "target <= 2 s")
report(
    "resident memory after start-up", Double(residentKilobytes(edge.processIdentifier)) / 1024, "MiB",
    "target <= 64 MiB")
_ = try probe.call("member.identify", ["card": .string(card(members / 2))])

// MARK: 2. Throughput from 8 lanes against raw group commit

let lanes = Int(ProcessInfo.processInfo.environment["BENCH_LANES"] ?? "8")!
let seconds = 5.0
final class Counter: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var value = 0
    private var samples: [Double] = []
    func add(_ count: Int, latencies: [Double] = []) {
        lock.withLock {
            value += count
            samples += latencies
        }
    }
    var total: Int { lock.withLock { value } }
    var latencies: [Double] { lock.withLock { samples } }
}

/// Runs `body` once per lane, each on a thread of its own with its own POS connection, and
/// waits for all of them.
func onEachLane(_ body: @escaping @Sendable (_ lane: Int, _ client: PosClient) -> Void) {
    let group = DispatchGroup()
    for lane in 0..<lanes {
        group.enter()
        Thread {
            defer { group.leave() }
            guard let client = try? PosClient(address: SocketAddress(host: "127.0.0.1", port: posPort)) else { return }
            body(lane, client)
        }.start()
    }
    group.wait()
}

func runLanes(ratePerLane: Double?, duration: Double, tag: String) -> Counter {
    let counter = Counter()
    onEachLane { lane, client in
        var done = 0
        var latencies: [Double] = []
        let begin = now()
        var next = begin
        while now() - begin < duration {
            if let rate = ratePerLane {
                // Open loop: requests go out on a schedule, whatever the answers do.
                next += 1 / rate
                let wait = next - now()
                if wait > 0 { usleep(UInt32(wait * 1e6)) }
            }
            let sent = now()
            let member = (lane * 100_003 + done * 7) % members
            _ = try? client.call(
                "checkout.purchase",
                [
                    "card": .string(card(member)), "amount": 12_345, "lane": .string("\(lane)"),
                    "receipt": .string("\(tag)-\(lane)-\(done)"),
                ])
            latencies.append(now() - sent)
            done += 1
        }
        counter.add(done, latencies: latencies)
    }
    return counter
}

let before = try probe.call("node.status")["writer"]
let closedLoop = runLanes(ratePerLane: nil, duration: seconds, tag: "t")
let purchaseRate = Double(closedLoop.total) / seconds
let after = try probe.call("node.status")["writer"]
let transactions = (after?["transactions"]?.intValue ?? 0) - (before?["transactions"]?.intValue ?? 0)
let jobs = (after?["jobs"]?.intValue ?? 0) - (before?["jobs"]?.intValue ?? 0)
let busy = (after?["busyMs"]?.intValue ?? 0) - (before?["busyMs"]?.intValue ?? 0)
let commit = (after?["commitMs"]?.intValue ?? 0) - (before?["commitMs"]?.intValue ?? 0)

func rawGroupCommitRate(batch: Int, duration: Double) throws -> Double {
    let path = work.appendingPathComponent("raw.sqlite").path
    let db = try SQLiteConnection(path: path)
    try db.configureDurable()
    try db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    let payload = SQLValue.blob([UInt8](repeating: 7, count: 120))
    var rowsWritten = 0
    let begin = now()
    while now() - begin < duration {
        try db.execute("BEGIN IMMEDIATE")
        for _ in 0..<batch {
            try db.run("INSERT INTO t(v) VALUES(?)", [payload])
            rowsWritten += 1
        }
        try db.execute("COMMIT")
    }
    return Double(rowsWritten) / (now() - begin)
}
/// Raw group commit as a server does it: `lanes` threads each insert a row and wait until it
/// is durable before inserting the next; one committer thread commits whatever is waiting in
/// one transaction (synchronous=FULL). No JSON, TCP or ledger logic: the storage's own limit
/// at this concurrency.
func rawConcurrentGroupCommitRate(writers: Int, duration: Double) throws -> Double {
    let path = work.appendingPathComponent("raw-concurrent.sqlite").path
    let db = try SQLiteConnection(path: path)
    try db.configureDurable()
    try db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    final class Queue: @unchecked Sendable {
        // @unchecked: every field under `condition`.
        let condition = NSCondition()
        var queued = 0
        var taken = 0
        var durable = 0
        var stop = false
    }
    let queue = Queue()
    let payload = SQLValue.blob([UInt8](repeating: 7, count: 120))
    let committer = Thread {
        while true {
            queue.condition.lock()
            while queue.queued == queue.taken && !queue.stop { queue.condition.wait() }
            if queue.stop {
                queue.condition.unlock()
                return
            }
            let upTo = queue.queued
            let batch = upTo - queue.taken
            queue.taken = upTo
            queue.condition.unlock()
            try! db.execute("BEGIN IMMEDIATE")
            for _ in 0..<batch { try! db.run("INSERT INTO t(v) VALUES(?)", [payload]) }
            try! db.execute("COMMIT")
            queue.condition.lock()
            queue.durable = upTo
            queue.condition.broadcast()
            queue.condition.unlock()
        }
    }
    committer.start()
    let group = DispatchGroup()
    let begin = now()
    for _ in 0..<writers {
        group.enter()
        Thread {
            while now() - begin < duration {
                queue.condition.lock()
                queue.queued += 1
                let ticket = queue.queued
                queue.condition.broadcast()
                while queue.durable < ticket { queue.condition.wait() }
                queue.condition.unlock()
            }
            group.leave()
        }.start()
    }
    group.wait()
    queue.condition.lock()
    queue.stop = true
    let rows = queue.durable
    queue.condition.broadcast()
    queue.condition.unlock()
    return Double(rows) / (now() - begin)
}
let rawConcurrent = try rawConcurrentGroupCommitRate(writers: lanes, duration: 3)
let raw8 = try rawGroupCommitRate(batch: lanes, duration: 3)
let raw1 = try rawGroupCommitRate(batch: 1, duration: 2)
report("raw SQLite commits, 1 row each (fsync limit)", raw1, "rows/s")
report("raw SQLite group commit, 8 rows per transaction", raw8, "rows/s", "the baseline")
report(
    "raw SQLite group commit, \(lanes) writer threads", rawConcurrent, "rows/s",
    "each thread waits for its row to be durable; one committer")
report(
    "checkout.purchase, \(lanes) concurrent lanes", purchaseRate, "purchases/s",
    String(
        format: "%.0f %% of the baseline (target >= 50 %%); %.0f %% of the writer-thread group commit",
        100 * purchaseRate / raw8, 100 * purchaseRate / rawConcurrent))

// MARK: 3. Latency at 1,000 purchases/s

let steady = runLanes(ratePerLane: 1000.0 / Double(lanes), duration: 5, tag: "l")
let sorted = steady.latencies.sorted()
func percentile(_ p: Double) -> Double {
    sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000
}
report("achieved rate in the latency run", Double(steady.total) / 5, "purchases/s", "offered 1,000/s")
report("jobs per transaction in the 8-lane run (group commit)", Double(jobs) / Double(max(transactions, 1)), "jobs")
report(
    "writer thread busy in the 8-lane run", 100 * Double(busy) / (seconds * 1000), "%",
    String(format: "of which COMMIT (fsync) %.0f %%", 100 * Double(commit) / Double(max(busy, 1))))
report("latency p50 at 1,000 purchases/s", percentile(0.50), "ms")
report("latency p99 at 1,000 purchases/s", percentile(0.99), "ms", "target <= 5 ms")
report(
    "resident memory after the runs", Double(residentKilobytes(edge.processIdentifier)) / 1024, "MiB",
    "target <= 64 MiB")

// MARK: 4. A 60 s partition

// The node's hub address leads nowhere: it has been offline all along, as in a partition.
// Lanes keep selling at 200 purchases/s: most earn points; one in five redeems 5 points of
// a member who just earned 6 here (the rights are held here), one in ten asks to redeem 50
// points a member earned at another store (held elsewhere: refused offline under the
// default policy, which allows no uncovered redemption).
let partitionSeconds = Double(ProcessInfo.processInfo.environment["BENCH_PARTITION_SECONDS"] ?? "60")!
final class Served: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    let lock = NSLock()
    var attempted = 0
    var served = 0
    var redeemAttempted = 0
    var redeemServed = 0
}
let served = Served()
do {
    onEachLane { lane, client in
        let begin = now()
        var next = begin
        var index = 0
        var lastMember = lane
        while now() - begin < partitionSeconds {
            next += Double(lanes) / 200
            let wait = next - now()
            if wait > 0 { usleep(UInt32(wait * 1e6)) }
            index += 1
            var params: [String: JSONValue] = [
                "amount": 12_345, "lane": .string("p\(lane)"), "receipt": .string("p-\(lane)-\(index)"),
            ]
            var redeeming = false
            if index % 10 == 0 {
                params["card"] = .string(card((lane * 7_919 + index * 13 + members / 3) % members))
                params["redeem"] = 50
                redeeming = true
            } else if index % 5 == 0 {
                params["card"] = .string(card(lastMember))
                params["redeem"] = 5
                redeeming = true
            } else {
                lastMember = (lane * 50_021 + index * 11) % members
                params["card"] = .string(card(lastMember))
            }
            let ok = (try? client.call("checkout.purchase", params)) != nil
            served.lock.withLock {
                served.attempted += 1
                if ok { served.served += 1 }
                if redeeming {
                    served.redeemAttempted += 1
                    if ok { served.redeemServed += 1 }
                }
            }
        }
    }
}
served.lock.withLock {
    report(
        "edge: purchases served during a \(Int(partitionSeconds)) s partition",
        100 * Double(served.served) / Double(max(served.attempted, 1)),
        "%",
        "\(served.served) of \(served.attempted); redemptions \(served.redeemServed) of \(served.redeemAttempted) (points held elsewhere wait for the hub)"
    )
}

if let path = ProcessInfo.processInfo.environment["BENCH_JSON"] {
    let json = rows.map {
        JSONValue.object(["name": .string($0.0), "value": .double($0.1), "unit": .string($0.2), "note": .string($0.3)])
    }
    try JSONValue.array(json).jsonLine.write(toFile: path, atomically: true, encoding: .utf8)
}

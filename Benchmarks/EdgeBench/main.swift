// Store-node figures against the physical limit of the same disk, printed and (with
// BENCH_JSON=path) written as JSON. Run with `make bench-edge` (release build).
//  1. A replica of 1,000,000 members: resident memory and start-up time of the real `edge`.
//  2. checkout.purchase from 8 concurrent lanes against raw SQLite group commit on the same
//     disk and with the node's storage set-up (WAL, synchronous=FULL, 1 KiB pages, WAL frames
//     written in one call per commit): 8 writer threads that each insert a row and wait for it
//     to be durable, one committer committing whatever waits (group commit at the lanes'
//     concurrency, without JSON, TCP or ledger work), and, as the ceiling, 8 rows per
//     transaction from one thread (always 8 ready, which no set of 8 waiting lanes reaches).
//     The disk's speed drifts from second to second on this machine, so the three run in
//     turn for BENCH_ROUNDS rounds (7) and medians are compared.
//     BENCH_LANES and BENCH_MEMBERS change the lane count and replica size; BENCH_LEDGER_COUNT
//     the in-process purchases, and BENCH_LEDGER_ONLY stops after them (for profiling).
//  3. Latency at a steady 1,000 purchases/s: each lane's requests arrive as a Poisson process.
//     A request that a slow answer held up is timed from when it was due (no coordinated
//     omission); one sent by a free lane is timed from when it is sent, since the lane's own
//     sleep overshoots on this VM (its p99, and the p99 with it counted, are printed too).
//     A request ends when the kernel queues its answer on the lane's socket (SO_TIMESTAMPNS):
//     a POS on its own machine sees that, while the lanes here then wait to be scheduled on
//     the two cores the node uses. The p99 up to the lane's read returning is printed too.
import EdgeNode
import Foundation
import NodeKit
import SyncProtocol

#if canImport(Glibc)
    import Glibc
#endif

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
/// The realtime clock, in seconds: the clock the kernel's receive stamps are read on.
func realNow() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
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
// The writer's own work for a purchase (SQL reads and writes, no JSON, TCP or commit): 2,000
// purchases in one transaction that is rolled back, so the replica the node opens is unchanged.
var ledgerMicroseconds = 0.0
let ledgerPurchases = Int(ProcessInfo.processInfo.environment["BENCH_LEDGER_COUNT"] ?? "2000")!
do {
    let db = try EdgeLedger.open(path: data.appendingPathComponent("edge.sqlite").path)
    var phoneKey = [UInt8](repeating: 7, count: 32)
    let ledger = EdgeLedger(node: NodeID(1), rules: PartnerRules(), phoneKey: SecretBytes(consuming: &phoneKey))
    let count = ledgerPurchases
    try db.execute("BEGIN IMMEDIATE")
    let start = now()
    for index in 0..<count {
        _ = try ledger.purchase(
            db,
            PurchaseRequest(
                card: card((index * 4_999 + 17) % members), amountMinor: 12_345, lane: "\(index % 8)",
                receipt: "w-\(index)"))
    }
    ledgerMicroseconds = (now() - start) / Double(count) * 1e6
    try db.execute("ROLLBACK")
    db.close()
}
if ProcessInfo.processInfo.environment["BENCH_LEDGER_ONLY"] != nil {
    print("ledger work per purchase, in-process: \(ledgerMicroseconds) us")
    exit(0)
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
let seconds = 2.0
final class Counter: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var value = 0
    private var failures = 0
    private var samples: [Double] = []
    private var strictSamples: [Double] = []
    private var lateSamples: [Double] = []
    private var socketSamples: [Double] = []
    func add(
        _ count: Int, failed: Int, latencies: [Double] = [], atSocket: [Double] = [], strict: [Double] = [],
        late: [Double] = []
    ) {
        lock.withLock {
            value += count
            failures += failed
            samples += latencies
            socketSamples += atSocket
            strictSamples += strict
            lateSamples += late
        }
    }
    /// Purchases answered with a result; failed ones are not counted.
    var total: Int { lock.withLock { value } }
    var failed: Int { lock.withLock { failures } }
    var latencies: [Double] { lock.withLock { samples } }
    /// The same, up to when the kernel queued the answer on the lane's socket: what a POS on
    /// its own machine would see, without the lane thread's wake-up on the shared cores.
    var socketLatencies: [Double] { lock.withLock { socketSamples } }
    /// Every request timed from when it was due, the load generator's own lateness included.
    var strictLatencies: [Double] { lock.withLock { strictSamples } }
    /// How late the load generator's sleep woke it, when it was not held up by an answer.
    var oversleep: [Double] { lock.withLock { lateSamples } }
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

func runLanes(ratePerLane: Double?, duration: Double, tag: String, firstPurchase: Int = 0) -> Counter {
    let counter = Counter()
    let group = DispatchGroup()
    for lane in 0..<lanes {
        group.enter()
        Thread {
            defer { group.leave() }
            // A lane that cannot connect counts one failure, which the runs' checks report.
            guard let client = try? BlockingLineClient(connectTo: SocketAddress(host: "127.0.0.1", port: posPort)),
                (try? client.stampArrivals()) != nil
            else { return counter.add(LaneResult(failed: 1)) }
            // Linux turns stamping on a moment after a socket first asks for it: the lane
            // waits for a stamped answer before its purchases are timed.
            for _ in 0..<200 where client.lastArrival == nil {
                guard (try? client.send(line: #"{"jsonrpc":"2.0","id":0,"method":"node.status"}"#)) != nil,
                    (try? client.readLine()) != nil
                else { break }
                if client.lastArrival == nil { usleep(5_000) }
            }
            counter.add(
                runLane(lane, client, ratePerLane: ratePerLane, duration: duration, tag: tag, first: firstPurchase))
        }.start()
    }
    group.wait()
    return counter
}

/// What one lane of `runLanes` did: its purchases and their timings (see `Counter`).
struct LaneResult {
    var succeeded = 0
    var failed = 0
    var latencies: [Double] = []
    var atSocket: [Double] = []
    var strict: [Double] = []
    var late: [Double] = []
}

@Sendable func runLane(
    _ lane: Int, _ client: BlockingLineClient, ratePerLane: Double?, duration: Double, tag: String, first: Int
)
    -> LaneResult
{
    var result = LaneResult()
    var done = 0
    let begin = now()
    var next = begin
    // Open loop: each lane's requests arrive as a Poisson process (independent lanes, as
    // shoppers are), whatever the answers do.
    while now() - begin < duration {
        var sent = now()
        var due = sent
        if let rate = ratePerLane {
            next += -log(Double.random(in: Double.ulpOfOne..<1)) / rate
            due = next
            let wait = next - now()
            if wait > 0 {
                // The lane is free before its next request is due. Its own sleep may
                // wake it late (this VM's timers, and the node's threads on the same two
                // cores): that lateness is the load generator's, so the request is timed
                // from when it is sent, and the lateness is reported on its own.
                usleep(UInt32(wait * 1e6))
                sent = now()
                result.late.append(sent - next)
            } else {
                // A slow answer held the lane up past the due time: the request is timed
                // from when it was due, so the node is charged for the wait it caused
                // (no coordinated omission).
                sent = next
            }
        }
        let member = (lane * 100_003 + (first + done) * 7) % members
        // The request line is written by hand and the answer only checked for a result,
        // so the load generator's CPU (on the node's two cores) stays small.
        let line =
            #"{"jsonrpc":"2.0","id":\#(done),"method":"checkout.purchase","params":{"card":"\#(card(member))","amount":12345,"lane":"\#(lane)","receipt":"\#(tag)-\#(lane)-\#(done)"}}"#
        if ratePerLane == nil {
            sent = now()
            due = sent
        }
        // The kernel's stamp is on the realtime clock: it is carried over to this clock
        // by the two clocks' difference read just before sending.
        let sendingAt = now()
        let sendingAtReal = realNow()
        let answer: String
        do {
            try client.send(line: line)
            answer = try client.readLine()
        } catch {
            // The lane is lost: the purchase in flight counts as failed, and the lane stops.
            result.failed += 1
            break
        }
        // An answer without the kernel's stamp fails the lane rather than being timed some
        // other way.
        guard let arrivedReal = client.lastArrival else {
            result.failed += 1
            break
        }
        let answered = now()
        result.latencies.append(answered - sent)
        result.atSocket.append(sendingAt + (arrivedReal - sendingAtReal) - sent)
        result.strict.append(answered - due)
        done += 1
        if answer.contains(#""result":"#) && !answer.contains(#""error":"#) {
            result.succeeded += 1
        } else {
            result.failed += 1
        }
    }
    return result
}

extension Counter {
    func add(_ lane: LaneResult) {
        add(
            lane.succeeded, failed: lane.failed, latencies: lane.latencies, atSocket: lane.atSocket,
            strict: lane.strict,
            late: lane.late)
    }
}

var transactions: Int64 = 0
var jobs: Int64 = 0
var busy: Int64 = 0
var commit: Int64 = 0
/// Runs the lanes closed-loop for `duration` and returns purchases per second, adding the
/// writer's counters to the totals above.
@MainActor func closedLoopRate(duration: Double, round: Int) throws -> Double {
    let statusBefore = try probe.call("node.status")
    let run = runLanes(ratePerLane: nil, duration: duration, tag: "t\(round)", firstPurchase: round * 50_000)
    let statusAfter = try probe.call("node.status")
    // Every purchase answered with a result is in the log, once.
    let logged = (statusAfter["lastSequence"]?.intValue ?? 0) - (statusBefore["lastSequence"]?.intValue ?? 0)
    precondition(run.failed == 0, "\(run.failed) purchases failed")
    precondition(logged == Int64(run.total), "\(run.total) purchases answered, \(logged) logged")
    let (before, after) = (statusBefore["writer"], statusAfter["writer"])
    transactions += (after?["transactions"]?.intValue ?? 0) - (before?["transactions"]?.intValue ?? 0)
    jobs += (after?["jobs"]?.intValue ?? 0) - (before?["jobs"]?.intValue ?? 0)
    busy += (after?["busyMs"]?.intValue ?? 0) - (before?["busyMs"]?.intValue ?? 0)
    commit += (after?["commitMs"]?.intValue ?? 0) - (before?["commitMs"]?.intValue ?? 0)
    return Double(run.total) / duration
}

func rawBatchedRate(batch: Int, duration: Double) throws -> Double {
    let path = work.appendingPathComponent("raw.sqlite").path
    // The node's storage set-up: WAL, synchronous=FULL, its page size, batched WAL writes.
    let db = try SQLiteConnection.openDurable(path: path, pageSize: EdgeLedger.pageSize)
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
/// one transaction (synchronous=FULL), rows queued while it inserts joining that transaction
/// (the faster of the two ways here). No JSON, TCP or ledger logic: the storage's own limit
/// at this concurrency.
func rawConcurrentGroupCommitRate(writers: Int, duration: Double) throws -> (rate: Double, rowsPerCommit: Double) {
    let path = work.appendingPathComponent("raw-concurrent.sqlite").path
    // The node's storage set-up: WAL, synchronous=FULL, its page size, batched WAL writes.
    let db = try SQLiteConnection.openDurable(path: path, pageSize: EdgeLedger.pageSize)
    try db.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)")
    final class Queue: @unchecked Sendable {
        // @unchecked: every field under `condition`.
        let condition = NSCondition()
        var queued = 0
        var taken = 0
        var durable = 0
        var commits = 0
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
            var upTo = queue.queued
            var batch = upTo - queue.taken
            queue.taken = upTo
            queue.condition.unlock()
            try! db.execute("BEGIN IMMEDIATE")
            while batch > 0 {
                for _ in 0..<batch { try! db.run("INSERT INTO t(v) VALUES(?)", [payload]) }
                // Rows queued meanwhile join this transaction (faster here, where inserting
                // takes microseconds; the node's writer does not, see DatabaseWriter).
                queue.condition.lock()
                batch = queue.queued - upTo
                upTo = queue.queued
                queue.taken = upTo
                queue.condition.unlock()
            }
            try! db.execute("COMMIT")
            queue.condition.lock()
            queue.durable = upTo
            queue.commits += 1
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
    let commits = queue.commits
    queue.condition.broadcast()
    queue.condition.unlock()
    return (Double(rows) / (now() - begin), Double(rows) / Double(max(commits, 1)))
}
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}
let rounds = Int(ProcessInfo.processInfo.environment["BENCH_ROUNDS"] ?? "7")!
var nodeRates: [Double] = []
var concurrentRates: [Double] = []
var rowsPerCommit: [Double] = []
var batchedRates: [Double] = []
for round in 0..<rounds {
    nodeRates.append(try closedLoopRate(duration: seconds, round: round))
    let concurrent = try rawConcurrentGroupCommitRate(writers: lanes, duration: seconds)
    concurrentRates.append(concurrent.rate)
    rowsPerCommit.append(concurrent.rowsPerCommit)
    batchedRates.append(try rawBatchedRate(batch: lanes, duration: seconds / 2))
}
let raw1 = try rawBatchedRate(batch: 1, duration: 2)
let purchaseRate = median(nodeRates)
let rawConcurrent = median(concurrentRates)
let raw8 = median(batchedRates)
func spread(_ values: [Double]) -> String {
    String(format: "%.0f-%.0f over %d rounds", values.min() ?? 0, values.max() ?? 0, values.count)
}
report("raw SQLite commits, 1 row each (fsync limit)", raw1, "rows/s")
report(
    "raw SQLite group commit, \(lanes) writer threads (median)", rawConcurrent, "rows/s",
    "the baseline: each thread waits for its row to be durable; \(spread(concurrentRates))")
report("raw group commit: rows per commit", median(rowsPerCommit), "rows", "\(lanes) writer threads")
report(
    "raw SQLite inserts, \(lanes) rows per transaction (median)", raw8, "rows/s",
    "the ceiling: \(lanes) rows always ready; \(spread(batchedRates))")
report(
    "checkout.purchase, \(lanes) concurrent lanes (median)", purchaseRate, "purchases/s",
    String(
        format: "%.0f %% of the group-commit baseline (target >= 50 %%); %.0f %% of the ceiling; ",
        100 * purchaseRate / rawConcurrent, 100 * purchaseRate / raw8) + spread(nodeRates)
        + "; round by round "
        + zip(nodeRates, concurrentRates).map { String(format: "%.0f", 100 * $0 / $1) }.joined(separator: "/") + " %")

// MARK: 3. Latency at 1,000 purchases/s

let steady = runLanes(ratePerLane: 1000.0 / Double(lanes), duration: 5, tag: "l")
precondition(steady.failed == 0, "\(steady.failed) purchases failed in the latency run")
func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000
}
report("achieved rate in the latency run", Double(steady.total) / 5, "purchases/s", "offered 1,000/s")
report("jobs per transaction in the 8-lane run (group commit)", Double(jobs) / Double(max(transactions, 1)), "jobs")
report(
    "writer thread busy in the 8-lane run", 100 * Double(busy) / (seconds * 1000 * Double(rounds)), "%",
    String(format: "of which COMMIT (fsync) %.0f %%", 100 * Double(commit) / Double(max(busy, 1))))
if let writer = try probe.call("node.status")["writer"] {
    report(
        "checkpoints on their own thread", Double(writer["checkpoints"]?.intValue ?? 0), "checkpoints",
        "\(writer["checkpointMs"]?.intValue ?? 0) ms in all; WAL at \(writer["walFrames"]?.intValue ?? 0) frames at the last"
    )
}
report(
    "ledger work per purchase, in-process", ledgerMicroseconds, "us",
    "SQL reads and writes only (no JSON, TCP or commit); \(ledgerPurchases) purchases")
report(
    "writer time per purchase in the 8-lane run, before COMMIT", Double(busy - commit) * 1000 / Double(max(jobs, 1)),
    "us", "the jobs' SQL and savepoints")
report(
    "writer time per transaction in COMMIT", Double(commit) * 1000 / Double(max(transactions, 1)), "us",
    "WAL frames written and fsynced")
report(
    "latency p50 at 1,000 purchases/s", percentile(steady.socketLatencies, 0.50), "ms",
    "to the answer at the lane's socket")
report(
    "latency p99 at 1,000 purchases/s", percentile(steady.socketLatencies, 0.99), "ms",
    "target <= 5 ms; from sending (or from the due time when a slow answer held the lane up) to the answer "
        + "at the lane's socket (the kernel's receive stamp)")
report(
    "latency p99 at 1,000 purchases/s, to the lane's read", percentile(steady.latencies, 0.99), "ms",
    String(
        format: "p50 %.2f ms; the same, up to the lane thread's read returning: its wake-up on the cores it shares "
            + "with the node", percentile(steady.latencies, 0.50)))
// The node's own measure: from a request's line arriving to its answer written, over the
// last 4,096 purchases (all from this run), so neither the lanes' threads nor the kernel's
// socket hand-off are in it.
if let purchases = try probe.call("node.status")["latency"]?["checkout.purchase"] {
    report(
        "latency p99 inside the node (line in to answer out)", purchases["p99Ms"]?.doubleValue ?? -1, "ms",
        String(
            format: "p50 %.2f ms; the last %d purchases, from node.status", purchases["p50Ms"]?.doubleValue ?? -1,
            purchases["requests"]?.intValue ?? 0))
}
report(
    "latency p99 from the due time, generator's lateness included", percentile(steady.strictLatencies, 0.99), "ms",
    "every request timed from its due time")
report(
    "load generator's sleep overshoot p99", percentile(steady.oversleep, 0.99), "ms",
    String(format: "p50 %.2f ms; the lanes share the node's two cores", percentile(steady.oversleep, 0.50)))
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

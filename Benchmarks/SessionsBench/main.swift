// 1,000 concurrent store sessions on one hub process: the real `hub` (release build), the
// stores simulated in this process on one libuv loop, each with its own key, the real
// channel and the real EdgeSession machine. Every store pushes a few purchases every
// couple of seconds and pulls the feed like an edge does. Figures: time to bring every
// session online, the hub's resident memory and CPU, and merge lag (an entry's creation at
// the store to the hub's ack of it). BENCH_SESSIONS, BENCH_SECONDS change the size.
import Foundation
import HubNode
import NodeKit
import SyncProtocol

#if canImport(Glibc)
    import Glibc
#endif

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
let environment = ProcessInfo.processInfo.environment
let sessionCount = Int(environment["BENCH_SESSIONS"] ?? "1000")!
let seconds = Double(environment["BENCH_SECONDS"] ?? "20")!
let pushEveryMilliseconds: UInt64 = 2_000
let entriesPerPush = 5
let binaries = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
let work = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(
    ".build/bench-sessions-\(getpid())")
try FileManager.default.createDirectory(at: work.appendingPathComponent("hub"), withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: work) }
var rows: [(String, Double, String, String)] = []
@MainActor func report(_ name: String, _ value: Double, _ unit: String, _ note: String = "") {
    rows.append((name, value, unit, note))
    print(name.padding(toLength: 58, withPad: " ", startingAt: 0), String(format: "%12.2f", value), unit, note)
}

// Keys and enrollment.
let hubKeyPath = work.appendingPathComponent("hub.key").path
let hubKey = try KeyFile.generate(at: hubKeyPath)
var storeKeys: [SigningKeyPair] = []
do {
    let db = try HubLedger.open(path: work.appendingPathComponent("hub/hub.sqlite").path)
    try db.transaction {
        for index in 0..<sessionCount {
            let key = SigningKeyPair.generate()
            storeKeys.append(key)
            _ = try HubLedger().enroll(db, name: "store-\(index + 1)", partner: "p\(index % 5)", key: key.publicKey)
        }
    }
    db.close()
}

func freePort() -> UInt16 { SocketAddress.freeLoopbackPort()! }

func procStatus(_ pid: Int32) -> (rssKilobytes: Int, cpuSeconds: Double) {
    var rss = -1
    if let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    {
        rss = Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
    }
    var cpu = 0.0
    if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) {
        let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
        if fields.count > 13 { cpu = (Double(fields[11]) ?? 0) / 100 + (Double(fields[12]) ?? 0) / 100 }
    }
    return (rss, cpu)
}

let port = freePort()
let hub = Process()
hub.executableURL = binaries.appendingPathComponent("hub")
hub.arguments = [
    "run", "--data", work.appendingPathComponent("hub").path, "--key", hubKeyPath, "--listen", "127.0.0.1:\(port)",
    "--http", "off", "--log-level", "error", "--handshakes-per-second", "100000", "--handshake-burst", "100000",
    "--handshake-timeout-ms", "30000",
]
try hub.run()
defer {
    hub.terminate()
    hub.waitUntilExit()
}
usleep(500_000)
let idle = procStatus(hub.processIdentifier)

/// One simulated store: its channel, its session machine and its own log.
final class Store {
    let node: NodeID
    let key: SigningKeyPair
    var stream: TCPStream?
    var channel: SecureChannel?
    var session: EdgeSession
    var log: [LogEntry] = []
    var createdAt: [Double] = []
    var acknowledged: UInt64 = 0
    var online = false

    init(node: NodeID, key: SigningKeyPair) {
        self.node = node
        self.key = key
        session = EdgeSession(
            configuration: .init(
                node: node, batchSize: 256, retryAfterMilliseconds: 10_000, rightsTimeoutMilliseconds: 3_000),
            feedWatermark: 0)
    }
}

let loop = try EventLoop()
let stores = (0..<sessionCount).map { Store(node: NodeID(UInt32($0 + 1)), key: storeKeys[$0]) }
var lags: [Double] = []
var onlineCount = 0
var allOnlineAt: Double?
var feedEntries = 0
let started = now()

@MainActor func execute(_ store: Store, _ actions: [EdgeSession.Action]) {
    for action in actions {
        switch action {
        case .send(let message):
            if let record = store.channel?.seal(message.encoded, now: loop.nowMilliseconds) {
                store.stream?.write(record)
            }
        case .loadPush(let after, let limit):
            let entries = Array(store.log.dropFirst(Int(after)).prefix(limit))
            execute(store, store.session.entriesLoaded(entries, now: loop.nowMilliseconds))
        case .recordAck(let upTo):
            let at = now()
            while store.acknowledged < upTo && Int(store.acknowledged) < store.createdAt.count {
                lags.append(at - store.createdAt[Int(store.acknowledged)])
                store.acknowledged += 1
            }
        case .applyChanges(let entries, let upTo, let more, _):
            feedEntries += entries.count
            execute(store, store.session.changesApplied(upTo: upTo, more: more, now: loop.nowMilliseconds))
        case .wentOnline:
            store.online = true
            onlineCount += 1
            if onlineCount == sessionCount { allOnlineAt = now() - started }
        case .close(let reason):
            print("session of \(store.node) closed: \(reason)")
        default:
            break
        }
    }
}

for store in stores {
    let stream = try TCPStream(loop: loop)
    store.stream = stream
    try stream.connect(to: SocketAddress(host: "127.0.0.1", port: port)) { error in
        MainActor.assumeIsolated {
            guard error == nil else {
                print("connect failed: \(error!)")
                return
            }
            let (channel, hello) = SecureChannel.initiator(
                identity: store.key, pinnedPeer: hubKey.publicKey, now: wallClockMilliseconds())
            store.channel = channel
            stream.onRead = { bytes in
                MainActor.assumeIsolated {
                    for event in channel.receive(bytes, now: loop.nowMilliseconds) {
                        switch event {
                        case .send(let out): stream.write(out)
                        case .established: execute(store, store.session.connected(now: loop.nowMilliseconds))
                        case .deliver(let plaintext):
                            guard let message = try? SyncMessage(decoding: plaintext) else { continue }
                            execute(store, store.session.received(message, now: loop.nowMilliseconds))
                        default: break
                        }
                    }
                }
            }
            try? stream.startReading()
            stream.write(hello)
        }
    }
}

// Each store creates a few purchases every two seconds (staggered), and ticks every second.
var nextStore = 0
let perSlice = max(1, sessionCount * 10 / Int(pushEveryMilliseconds))
let pushTimer = try LoopTimer(loop: loop)
pushTimer.start(after: 10, repeat: 10) {
    MainActor.assumeIsolated {
        for _ in 0..<perSlice {
            let store = stores[nextStore]
            nextStore = (nextStore + 1) % stores.count
            guard store.online else { continue }
            for _ in 0..<entriesPerPush {
                let sequence = UInt64(store.log.count + 1)
                let member = MemberID(origin: store.node, serial: UInt32(sequence % 50 + 1))
                store.log.append(
                    LogEntry(
                        origin: store.node, sequence: sequence,
                        timestamp: HLCTimestamp(milliseconds: wallClockMilliseconds(), logical: 0),
                        idempotencyKey: "1/\(sequence)",
                        operation: .purchase(
                            PurchaseRecord(
                                member: member, lane: "1", receipt: "\(sequence)", amountMinor: 10_000, pointsEarned: 5,
                                pointsRedeemed: 0)),
                        effects: [
                            SlotWrite(
                                member: member, account: .main, slot: .earned(store.node),
                                value: (sequence / 50 + 1) * 5)
                        ]))
                store.createdAt.append(now())
            }
            execute(store, store.session.localChange())
        }
    }
}
let tickTimer = try LoopTimer(loop: loop)
tickTimer.start(after: 1_000, repeat: 1_000) {
    MainActor.assumeIsolated {
        for store in stores where store.online { execute(store, store.session.tick(now: loop.nowMilliseconds)) }
    }
}
let stopTimer = try LoopTimer(loop: loop)
var peakRSS = 0
let sampleTimer = try LoopTimer(loop: loop)
sampleTimer.start(after: 500, repeat: 500) {
    MainActor.assumeIsolated {
        peakRSS = max(peakRSS, procStatus(hub.processIdentifier).rssKilobytes)
    }
}
stopTimer.start(after: UInt64(seconds * 1000)) { MainActor.assumeIsolated { loop.stop() } }
let cpuBefore = procStatus(hub.processIdentifier).cpuSeconds
loop.run()
let busy = procStatus(hub.processIdentifier)
let elapsed = now() - started

lags.sort()
@MainActor func percentile(_ p: Double) -> Double {
    lags.isEmpty ? 0 : lags[min(lags.count - 1, Int(Double(lags.count) * p))] * 1000
}
let created = stores.reduce(0) { $0 + $1.log.count }
let merged = lags.count
report("store sessions online at once", Double(onlineCount), "sessions", "of \(sessionCount) enrolled, one hub process")
report(
    "time to bring every session online", allOnlineAt ?? -1, "s",
    "handshake, hello and welcome for all, from a cold start")
report("hub resident memory, idle", Double(idle.rssKilobytes) / 1024, "MiB")
report(
    "hub resident memory, peak with every session", Double(peakRSS) / 1024, "MiB",
    String(format: "%.1f KiB per session", Double(peakRSS - idle.rssKilobytes) / Double(max(1, sessionCount))))
report(
    "hub CPU while serving", 100 * (busy.cpuSeconds - cpuBefore) / elapsed, "% of a core",
    "merging pushes and serving the feed to every store")
report(
    "entries merged and acknowledged", Double(merged) / elapsed, "entries/s", "\(merged) of \(created) created")
report("merge lag p50 (created at the store to acked by the hub)", percentile(0.5), "ms")
report("merge lag p99", percentile(0.99), "ms")
report(
    "feed entries delivered to stores", Double(feedEntries) / elapsed, "entries/s",
    "every store pulls every other store's entries")

for store in stores { store.stream?.close() }
pushTimer.close()
tickTimer.close()
stopTimer.close()
sampleTimer.close()
loop.run()
loop.shutdown()

if let path = environment["BENCH_JSON"] {
    let json = rows.map {
        JSONValue.object(["name": .string($0.0), "value": .double($0.1), "unit": .string($0.2), "note": .string($0.3)])
    }
    try JSONValue.array(json).jsonLine.write(toFile: path, atomically: true, encoding: .utf8)
}

import EdgeNode
import Foundation
import HubNode
import NodeKit
import SyncProtocol

/// A node's clock as the simulation sets it: offset and drift from simulated time, read by
/// the real ledger code through its injected `now`.
final class NodeClock: @unchecked Sendable {
    // @unchecked: the simulation is single-threaded; the ledger reads it on that thread.
    var local: UInt64 = 0
}

/// A violated invariant, with what the run needs to reproduce it.
public struct Violation: Error, CustomStringConvertible, Sendable {
    public var seed: UInt64
    public var check: String
    public var detail: String
    public var trace: [String]
    public var description: String {
        "seed \(seed): \(check) violated: \(detail)\nlast events:\n" + trace.map { "  " + $0 }.joined(separator: "\n")
    }
}

/// What a run did and measured.
public struct SimulationSummary: Sendable, Equatable {
    public var seed: UInt64
    public var faults: String
    public var traceHash: UInt64
    public var events: Int
    public var simulatedMilliseconds: UInt64
    public var purchasesAcknowledged: Int
    public var purchasesRefused: Int
    public var refundsAcknowledged: Int
    public var registrations: Int
    public var retriesReplayed: Int
    public var offlineRedemptionsRequested: Int
    public var offlineRedemptionsServed: Int
    public var onlineRedemptionsRequested = 0
    public var onlineRedemptionsServed = 0
    public var messagesSent: Int
    public var messagesLost: Int
    public var partitions: Int
    public var crashes: Int
    public var convergenceMilliseconds: UInt64
    public var hubEntries: Int
    /// Purchases acknowledged per simulated minute, for the report's chart.
    public var perMinute: [Int]
    /// Simulated minutes at which a partition healed.
    public var heals: [Int]
    /// Every ten simulated minutes: each store's operations not yet acknowledged by the hub.
    public var unsyncedSamples: [[Int]] = []
    /// Promo codes credited, and activations refused (a code already used, or the hub unreachable).
    public var promosCredited = 0
    /// Second registrations of a person (same phone, new card) and merges the hub made.
    public var duplicateRegistrations = 0
    public var memberMerges = 0
    public var promosRefused = 0
    /// For each partition healed during trading: simulated milliseconds until its stores had
    /// pushed everything written before the heal and pulled the hub's feed as it was then.
    public var healConvergence: [Int] = []
    /// Members a store did not hold, looked up at the hub (online), and found.
    public var lookups = 0
    public var lookupsFound = 0
}

/// The deterministic simulator: one thread, one seeded generator, simulated clocks and a
/// simulated network, driving the real sans-IO session machines (`EdgeSession`,
/// `HubSession`), the real wire encoding and the real ledgers (`EdgeLedger`, `HubLedger`) on
/// in-memory SQLite. A crash keeps exactly what was committed (every operation commits
/// before it is acknowledged) and loses sessions, messages in flight and pending requests.
/// The channel's encryption is left out (it is tested on its own): messages cross the
/// simulated network as encoded `SyncMessage` bytes.
public final class Simulation {
    enum Event {
        case visit
        case deliver(store: Int, connection: UInt64, toHub: Bool, bytes: [UInt8])
        case tick(store: Int)
        case connect(store: Int)
        case detectCut(store: Int, connection: UInt64)
        case partition
        case healPartition(id: Int)
        case flap(store: Int, cut: Bool)
        case crashStore(Int)
        case restartStore(Int)
        case crashHub
        case restartHub
        case sample
    }

    /// Where a run is, for a progress display: the phase, how far through it (0…1), and the
    /// events handled so far. Reporting never changes what the run does.
    public struct Progress: Sendable, Equatable {
        public enum Phase: String, Sendable {
            case registering = "registering members"
            case spreading = "spreading registrations"
            case trading = "trading"
            case converging = "healing, converging"
        }
        public var phase: Phase
        public var fraction: Double
        public var events: Int
    }

    /// Called every few thousand events (and at each phase's start and end) when set.
    public var onProgress: ((Progress) -> Void)?
    private var phase = (Progress.Phase.registering, from: UInt64(0), to: UInt64(1))

    func reportProgress(_ fraction: Double? = nil) {
        guard let onProgress else { return }
        let span = Double(max(1, phase.to - phase.from))
        let position = fraction ?? Double(min(max(now, phase.from), phase.to) - phase.from) / span
        onProgress(Progress(phase: phase.0, fraction: min(1, max(0, position)), events: summary.events))
    }

    struct PendingPurchase {
        /// The shopper's index in `members`.
        var member: Int
        var request: PurchaseRequest
        var grant: [SlotWrite]
        var rounds: Int
        var redeemRequested: UInt64
        var offline: Bool
        /// The store asked the hub for the member once already.
        var lookedUp = false
    }

    final class Store {
        let index: Int
        let node: NodeID
        let db: SQLiteConnection
        let clock = NodeClock()
        var ledger: EdgeLedger
        var session: EdgeSession
        var connection: UInt64?
        var up = true
        var online = false
        var outageStarted: UInt64 = 0
        var skew: Int64 = 0
        var driftPPM: Int64 = 0
        var pending: [UInt32: PendingPurchase] = [:]
        var promos: [UInt32: MemberID] = [:]
        var lookups: [UInt32: PendingPurchase] = [:]
        var receipts = 0
        var backoff: UInt64 = 250

        init(index: Int, node: NodeID, db: SQLiteConnection, ledger: EdgeLedger, session: EdgeSession) {
            self.index = index
            self.node = node
            self.db = db
            self.ledger = ledger
            self.session = session
        }
    }

    /// A purchase the POS was told succeeded, as the shopper remembers it.
    struct Bought {
        var store: Int
        var lane: String
        var receipt: String
        var amount: UInt64
        var redeemed: UInt64
        var sequence: UInt64
    }

    struct Member {
        var card: String
        /// The person: a second registration of one person (another card, the same phone)
        /// shares it, and the hub merges the two records.
        var person: Int
        var home: Int
        var purchases: [Bought] = []
    }

    struct Acknowledged {
        var store: Int
        var key: String
        var amount: UInt64
        var sequence: UInt64
    }

    let config: SimulationConfig
    public let faults: FaultMix
    var random: SimRandom
    var queue = EventQueue<Event>()
    var now: UInt64 = 0
    var stores: [Store] = []
    let hubDB: SQLiteConnection
    let hubClock = NodeClock()
    var hubLedger = HubLedger()
    var hubUp = true
    var hubSessions: [Int: (connection: UInt64, session: HubSession)] = [:]
    var nextConnection: UInt64 = 1
    var cut: Set<Int> = []
    var partitionCuts: [Int: Set<Int>] = [:]
    var nextPartition = 1
    var members: [Member] = []
    var promoCodes: [String] = []
    /// Heals waiting to converge: when, which stores, their logs' ends and the hub's feed head then.
    var pendingHeals: [(at: UInt64, stores: [Int: UInt64], feedHead: UInt64)] = []
    var zipf: Zipf
    var acknowledged: [Acknowledged] = []
    var trace = TraceHash()
    var recent: [String] = []
    public private(set) var fullTrace: [String] = []
    var summary: SimulationSummary
    var faultsActive = true
    var workloadEnd: UInt64
    /// Simulated start: Monday 2026-11-02 00:00 UTC.
    static let epoch: UInt64 = 1_793_577_600_000
    /// The stores' sync tick (the edge's default is 1 s; 5 s keeps idle chatter down here).
    static let policy = OfflinePolicy()

    public init(_ config: SimulationConfig) throws {
        self.config = config
        random = SimRandom(seed: config.seed)
        faults = FaultMix.draw(&random)
        // The hub's database is private to this run and held in memory by SQLite's memdb VFS
        // (a name without a leading slash is not shared): at a thousand stores it grows to
        // hundreds of megabytes, where `:memory:` commits grow slow.
        hubDB = try HubLedger.open(path: "file:simulated-hub?vfs=memdb")
        try hubDB.reserveMemoryFile(bytes: Self.hubReservation(config))
        // One connection ever opens it, so it keeps its lock: no check at every transaction
        // that another connection changed the file (1 % of the 20-store day's instructions).
        try hubDB.execute("PRAGMA locking_mode=EXCLUSIVE")
        // memdb hands the pager a page by copying it from its buffer, so a page cache saves
        // little; what it costs grows with it (pages found by hash, recycled in LRU order, and
        // the walk over the whole cache a commit can take, see docs/simulation.md). 256 KiB
        // took the 1,000-store day no longer than SQLite's 2 MiB, and a few percent less in
        // some pairs of runs; 16 MiB took 7 % longer.
        try hubDB.execute("PRAGMA cache_size = -256")
        zipf = Zipf(count: max(1, config.members), offset: config.activityOffset * Double(config.members))
        workloadEnd = UInt64(config.days * 86_400_000)
        summary = SimulationSummary(
            seed: config.seed, faults: faults.description, traceHash: 0, events: 0, simulatedMilliseconds: 0,
            purchasesAcknowledged: 0, purchasesRefused: 0, refundsAcknowledged: 0, registrations: 0,
            retriesReplayed: 0, offlineRedemptionsRequested: 0, offlineRedemptionsServed: 0, messagesSent: 0,
            messagesLost: 0, partitions: 0, crashes: 0, convergenceMilliseconds: 0, hubEntries: 0, perMinute: [],
            heals: [])
        let hubClock = self.hubClock
        hubLedger.now = { @Sendable () -> UInt64 in hubClock.local }
        hubLedger.placementDays = config.placementDays
        if config.partnerGroups { hubLedger.feedScope = Self.partnerGroups }
        for index in 0..<config.stores {
            var keyBytes = [UInt8](repeating: 7, count: 32)
            let phoneKey = SecretBytes(consuming: &keyBytes)
            let node = NodeID(UInt32(index + 1))
            _ = try hubLedger.enroll(
                hubDB, name: "store-\(index + 1)", partner: "partner-\(index % max(1, config.partners))",
                key: SigningKeyPair.fromSeed(
                    withUnsafeBytes(of: UInt32(index).bigEndian, Array.init) + Array(repeating: 0, count: 27) + [1]
                ).publicKey)
            var ledger = EdgeLedger(
                node: node, rules: PartnerRules(), policy: Self.policy, phoneKey: phoneKey,
                placementDays: config.placementDays)
            let store = Store(
                index: index, node: node, db: try EdgeLedger.openInMemory(), ledger: ledger,
                session: Self.newSession(node, watermark: 0))
            let clock = store.clock
            ledger.now = { @Sendable () -> UInt64 in clock.local }
            store.ledger = ledger
            store.skew =
                faults.maxSkewMilliseconds == 0
                ? 0 : Int64(random.int(-Int(faults.maxSkewMilliseconds)...Int(faults.maxSkewMilliseconds)))
            store.driftPPM =
                faults.maxDriftPPM == 0 ? 0 : Int64(random.int(-Int(faults.maxDriftPPM)...Int(faults.maxDriftPPM)))
            stores.append(store)
        }
    }

    /// The hub's database grows in place up to this (see `reserveMemoryFile`): about what a
    /// world of this size writes, generously. A larger hub only grows as memdb grows it.
    static func hubReservation(_ config: SimulationConfig) -> Int64 {
        let members = Int64(max(config.members, 1))
        let storeDays = Int64(max(config.stores, 1)) * Int64(max(config.days, 1).rounded(.up))
        return 64 << 20 + members * 384 + storeDays * 384 << 10
    }

    static let partnerGroups = FeedScope(byPartnerGroup: true, groups: ["north": ["partner-0", "partner-1"]])

    static func newSession(_ node: NodeID, watermark: UInt64) -> EdgeSession {
        var session = EdgeSession(
            configuration: .init(
                node: node, batchSize: 256, retryAfterMilliseconds: 5_000, rightsTimeoutMilliseconds: 3_000),
            feedWatermark: watermark)
        session.hubWireMinor = WireVersion.minor
        return session
    }

    static func card(_ index: Int) -> String { CardNumber.issued(prefix: "47", serial: index).digits }

    // MARK: Trace

    func log(_ line: @autoclosure () -> String) {
        let text = "\(now) \(line())"
        trace.add(text)
        if config.recordTrace { fullTrace.append(text) }
        recent.append(text)
        if recent.count > 60 { recent.removeFirst(recent.count - 40) }
    }

    func violation(_ check: String, _ detail: String) -> Violation {
        Violation(seed: config.seed, check: check, detail: detail, trace: Array(recent.suffix(30)))
    }

    // MARK: Running

    /// Runs the safety phase (workload under faults), heals everything, runs the liveness
    /// phase until every replica converged, then checks every invariant.
    public func run() throws -> SimulationSummary {
        // Promo codes at the hub, drawn from the seed (some will be tried twice), issued in
        // one transaction.
        try hubDB.transaction {
            for index in 0..<max(10, config.members / 10) {
                let code = "SIM" + String(format: "%07d", index * 7_919 % 10_000_000)
                promoCodes.append(code)
                try hubDB.run(
                    "INSERT INTO promo_codes(code, points, created_ms) VALUES(?, ?, ?)",
                    [.text(code), .int(50 + 10 * (index % 5)), .uint(Self.epoch)])
            }
        }
        // Members known everywhere before the day starts: registered at their home stores.
        if config.preloadMembers {
            try preloadMembers()
        } else {
            for index in 0..<config.members {
                try register(at: index % config.stores, index: index)
                if index % 1_024 == 0 { reportProgress(Double(index) / Double(max(1, config.members))) }
            }
        }
        reportProgress(1)
        for store in stores.indices {
            queue.push(UInt64(random.int(0...200)), .connect(store: store))
            queue.push(config.syncIntervalMilliseconds + UInt64(store), .tick(store: store))
        }
        // Let the registrations spread before shoppers and faults arrive.
        phase = (.spreading, 0, 120_000)
        try runUntil(120_000)
        reportProgress(1)
        let start = now
        workloadEnd = start + UInt64(config.days * 86_400_000)
        phase = (.trading, start, workloadEnd)
        reportProgress()
        queue.push(start, .visit)
        queue.push(start, .sample)
        if faults.partitionsPerHour > 0 { schedulePartition() }
        for store in stores.indices where faults.storeCrashesPerDay > 0 {
            queue.push(
                now + UInt64(random.exponential(mean: 86_400_000 / faults.storeCrashesPerDay)), .crashStore(store))
        }
        if faults.hubCrashesPerDay > 0 {
            queue.push(now + UInt64(random.exponential(mean: 86_400_000 / faults.hubCrashesPerDay)), .crashHub)
        }
        try runUntil(workloadEnd)
        reportProgress()

        // Heal: no more faults or shoppers; every partition lifted, every node restarted.
        faultsActive = false
        log("heal")
        let healedAt = now
        cut.removeAll()
        partitionCuts.removeAll()
        if !hubUp { try restartHub() }
        for store in stores where !store.up { try restart(store.index) }
        for store in stores where store.connection == nil { queue.push(now + 1, .connect(store: store.index)) }
        var converged = false
        phase = (.converging, healedAt, healedAt + config.convergenceBoundMilliseconds)
        while now < healedAt + config.convergenceBoundMilliseconds {
            try runUntil(now + 1_000)
            if try isConverged() {
                converged = true
                break
            }
        }
        summary.convergenceMilliseconds = now - healedAt
        reportProgress(1)
        guard converged else {
            throw violation(
                "convergence",
                "replicas still differ \(config.convergenceBoundMilliseconds / 1000) s after healing: \(try divergence())"
            )
        }
        try checkInvariants()
        summary.traceHash = trace.value
        summary.simulatedMilliseconds = now
        summary.hubEntries = Int(try hubDB.scalar("SELECT COUNT(*) FROM entries") ?? 0)
        summary.memberMerges = Int(try hubDB.scalar("SELECT COUNT(*) FROM member_merges") ?? 0)
        return summary
    }

    func runUntil(_ end: UInt64) throws {
        while let next = queue.peekTime, next <= end {
            let (time, event) = queue.pop()!
            now = time
            summary.events += 1
            if summary.events & 4_095 == 0 { reportProgress() }
            try handle(event)
        }
        now = max(now, end)
        for store in stores { setClock(store) }
    }

    func setClock(_ store: Store) {
        let drift = Int64(now) * store.driftPPM / 1_000_000
        store.clock.local = UInt64(Int64(Self.epoch) + Int64(now) + store.skew + drift)
    }

    func handle(_ event: Event) throws {
        hubClock.local = Self.epoch + now
        switch event {
        case .visit:
            guard now < workloadEnd else { return }
            try visit()
            let minuteOfDay = Double((now / 60_000) % 1440)
            let day = (now / 86_400_000) % 7
            // Shops open 7:00–22:00 with a lunch and an evening peak; weekends are busier.
            let hour = minuteOfDay / 60
            var rhythm =
                hour < 7 || hour >= 22 ? 0.02 : 0.5 + 0.5 * sin((hour - 7) / 15 * Double.pi * 2 - 1.2).magnitude
            if day >= 5 { rhythm *= 1.3 }
            let perMillisecond = config.visitsPerStorePerDay * Double(config.stores) * rhythm / 86_400_000 * 1.6
            queue.push(now + max(1, UInt64(random.exponential(mean: 1 / max(perMillisecond, 1e-9)))), .visit)
        case .deliver(let index, let connection, let toHub, let bytes):
            try deliver(store: index, connection: connection, toHub: toHub, bytes: bytes)
        case .tick(let index):
            let store = stores[index]
            queue.push(now + config.syncIntervalMilliseconds, .tick(store: index))
            if index == 0 { try checkHeals() }
            guard store.up else { return }
            setClock(store)
            if store.connection != nil {
                try execute(store, store.session.tick(now: now, timedReleases: store.ledger.releasesWithTime))
            }
        case .connect(let index):
            try connect(index)
        case .detectCut(let index, let connection):
            if stores[index].connection == connection { try disconnect(index, reason: "link cut") }
        case .partition:
            guard faultsActive else { return }
            startPartition()
            schedulePartition()
        case .healPartition(let id):
            guard let lifted = partitionCuts.removeValue(forKey: id) else { return }
            cut = partitionCuts.values.reduce(into: Set<Int>()) { $0.formUnion($1) }
            log("partition \(id) healed (\(lifted.count) links)")
            summary.heals.append(Int(now / 60_000))
            // Stores another partition still cuts off are measured at that one's heal.
            var ends: [Int: UInt64] = [:]
            for index in lifted.sorted() where !cut.contains(index) {
                ends[index] = try stores[index].ledger.status(stores[index].db).lastSequence
            }
            if !ends.isEmpty {
                pendingHeals.append(
                    (now, ends, UInt64(try hubDB.scalar("SELECT COALESCE(MAX(feed_seq), 0) FROM entries") ?? 0)))
            }
            for index in lifted.sorted() where stores[index].connection == nil {
                queue.push(now + 1, .connect(store: index))
            }
        case .flap(let index, let isCut):
            guard faultsActive else { return }
            if isCut { cut.insert(index) } else { cut.remove(index) }
            log("flap store-\(index + 1) \(isCut ? "cut" : "restored")")
            if isCut, let connection = stores[index].connection {
                queue.push(now + UInt64(random.int(500...3_000)), .detectCut(store: index, connection: connection))
            } else if !isCut {
                queue.push(now + 1, .connect(store: index))
            }
        case .crashStore(let index):
            guard faultsActive else { return }
            try crash(index)
            queue.push(now + UInt64(random.int(5_000...300_000)), .restartStore(index))
            queue.push(
                now + UInt64(random.exponential(mean: 86_400_000 / faults.storeCrashesPerDay)), .crashStore(index))
        case .restartStore(let index):
            if !stores[index].up { try restart(index) }
        case .crashHub:
            guard faultsActive, hubUp else { return }
            hubUp = false
            summary.crashes += 1
            log("hub crash")
            for index in stores.indices where stores[index].connection != nil {
                try disconnect(index, reason: "hub crash")
            }
            hubSessions.removeAll()
            queue.push(now + UInt64(random.int(5_000...120_000)), .restartHub)
            queue.push(now + UInt64(random.exponential(mean: 86_400_000 / faults.hubCrashesPerDay)), .crashHub)
        case .restartHub:
            if !hubUp { try restartHub() }
        case .sample:
            guard now < workloadEnd else { return }
            summary.unsyncedSamples.append(
                try stores.map { store in Int(try store.ledger.unsyncedEntries(store.db)) })
            queue.push(now + 600_000, .sample)
        }
    }

    // MARK: Faults

    func schedulePartition() {
        let wait = random.exponential(mean: 3_600_000 / faults.partitionsPerHour)
        queue.push(now + UInt64(wait), .partition)
    }

    func startPartition() {
        let shape = random.int(0...3)
        let id = nextPartition
        nextPartition += 1
        summary.partitions += 1
        let length = UInt64(random.exponential(mean: faults.partitionMeanMinutes * 60_000)) + 10_000
        var links = Set<Int>()
        switch shape {
        case 0: links = [random.int(0...(stores.count - 1))]
        case 1:
            let region = random.int(0...(config.regions - 1))
            links = Set(stores.indices.filter { $0 % config.regions == region })
        case 2: links = Set(stores.indices)  // the hub is cut off from everyone
        default:
            // Flapping: links cut and restored one by one, in random order.
            let chosen = stores.indices.filter { _ in random.chance(0.5) }
            var at = now
            for index in chosen.shuffled(using: &random) {
                at += UInt64(random.int(1_000...60_000))
                queue.push(at, .flap(store: index, cut: true))
                queue.push(at + UInt64(random.int(5_000...120_000)), .flap(store: index, cut: false))
            }
            log("partition \(id): flapping \(chosen.count) links")
            return
        }
        log("partition \(id): shape \(shape), \(links.count) links for \(length / 1000) s")
        partitionCuts[id] = links
        cut.formUnion(links)
        for index in links.sorted() {
            if let connection = stores[index].connection {
                queue.push(now + UInt64(random.int(500...3_000)), .detectCut(store: index, connection: connection))
            }
        }
        queue.push(now + length, .healPartition(id: id))
    }

    func crash(_ index: Int) throws {
        let store = stores[index]
        guard store.up else { return }
        summary.crashes += 1
        log("crash store-\(index + 1)")
        if store.connection != nil { try disconnect(index, reason: "crash") }
        store.up = false
        store.pending.removeAll()  // POS requests waiting on the hub are never answered
        store.lookups.removeAll()
    }

    func restart(_ index: Int) throws {
        let store = stores[index]
        store.up = true
        setClock(store)
        // As EdgeNode starts: a fresh session resuming from the committed feed watermark.
        let watermark = try store.ledger.status(store.db).feedWatermark
        store.session = Self.newSession(store.node, watermark: watermark)
        store.backoff = 250
        log("restart store-\(index + 1) at watermark \(watermark)")
        queue.push(now + 1, .connect(store: index))
    }

    func restartHub() throws {
        hubUp = true
        log("hub restart")
        for index in stores.indices where stores[index].up && stores[index].connection == nil {
            queue.push(now + UInt64(random.int(1...2_000)), .connect(store: index))
        }
    }

    // MARK: Connections and messages

    func connect(_ index: Int) throws {
        let store = stores[index]
        guard store.up, store.connection == nil else { return }
        guard hubUp, !cut.contains(index) else {
            // Jittered exponential backoff, as the uplink does.
            let jittered = store.backoff / 2 + UInt64(random.int(0...Int(store.backoff / 2)))
            store.backoff = min(store.backoff * 2, 5_000)
            queue.push(now + jittered, .connect(store: index))
            return
        }
        let connection = nextConnection
        nextConnection += 1
        store.connection = connection
        store.backoff = 250
        hubSessions[index] = (connection, HubSession(store: store.node))
        setClock(store)
        log("connect store-\(index + 1) #\(connection)")
        try execute(store, store.session.connected(now: now))
    }

    func disconnect(_ index: Int, reason: String) throws {
        let store = stores[index]
        guard store.connection != nil else { return }
        log("disconnect store-\(index + 1): \(reason)")
        store.connection = nil
        hubSessions[index] = nil
        if store.online {
            store.online = false
            store.outageStarted = store.clock.local
        }
        try execute(store, store.session.disconnected())
        if store.up { queue.push(now + store.backoff, .connect(store: index)) }
    }

    func send(_ index: Int, toHub: Bool, _ message: SyncMessage) {
        guard let connection = stores[index].connection else { return }
        summary.messagesSent += 1
        if cut.contains(index) || (faultsActive && random.chance(faults.loss)) {
            summary.messagesLost += 1
            return
        }
        let bytes = message.encoded
        let copies = faultsActive && random.chance(faults.duplication) ? 2 : 1
        for _ in 0..<copies {
            let latency =
                faults.latencyMilliseconds + UInt64(random.int(0...Int(faults.latencySpreadMilliseconds)))
            queue.push(now + latency, .deliver(store: index, connection: connection, toHub: toHub, bytes: bytes))
        }
    }

    func deliver(store index: Int, connection: UInt64, toHub: Bool, bytes: [UInt8]) throws {
        let store = stores[index]
        guard store.connection == connection, !cut.contains(index) else { return }
        let message = try SyncMessage(decoding: bytes)
        if toHub {
            guard hubUp, var entry = hubSessions[index], entry.connection == connection else { return }
            if let minor = SyncMessage.minorVersion(of: bytes) { entry.session.storeWireMinor = minor }
            let actions = entry.session.received(message)
            hubSessions[index] = entry
            try executeHub(index, actions)
        } else {
            setClock(store)
            try execute(store, store.session.received(message, now: now))
        }
    }

    // MARK: The store's driver (as Uplink does it)

    func execute(_ store: Store, _ actions: [EdgeSession.Action]) throws {
        for action in actions {
            switch action {
            case .send(let message):
                send(store.index, toHub: true, message)
            case .loadPush(let after, let limit):
                let entries = try store.db.transaction {
                    try store.ledger.preparePush(store.db, after: after, limit: limit)
                }
                try execute(store, store.session.entriesLoaded(entries, now: now))
            case .recordAck(let upTo):
                // A single write (events run one at a time): no explicit transaction around it.
                try store.ledger.acknowledge(store.db, upTo: upTo)
            case .applyChanges(let entries, let upTo, let more, let snapshots):
                do {
                    try store.db.transaction {
                        _ = try store.ledger.applyFeed(store.db, entries, upTo: upTo, snapshots: snapshots)
                    }
                    try execute(store, store.session.changesApplied(upTo: upTo, more: more, now: now))
                } catch {
                    log("store-\(store.index + 1) refused changes: \(error)")
                    try execute(store, store.session.changesRefused("\(error)"))
                }
            case .rightsGranted(let id, let writes):
                if var pending = store.pending.removeValue(forKey: id) {
                    pending.grant += writes
                    try purchase(store, pending)
                }
            case .memberFound(let id, let snapshots):
                guard var pending = store.lookups.removeValue(forKey: id) else { break }
                if !snapshots.isEmpty {
                    summary.lookupsFound += 1
                    try store.db.transaction { try store.ledger.applySnapshots(store.db, snapshots) }
                }
                log("lookup of \(pending.request.card) at store-\(store.index + 1): \(snapshots.count) found")
                pending.lookedUp = true
                try purchase(store, pending)
            case .rightsFailed(let id, _):
                if store.pending.removeValue(forKey: id) != nil { summary.purchasesRefused += 1 }
                if store.lookups.removeValue(forKey: id) != nil { summary.purchasesRefused += 1 }
                if store.promos.removeValue(forKey: id) != nil { summary.promosRefused += 1 }
            case .promoResolved(let id, _, let writes, let refusal):
                guard let member = store.promos.removeValue(forKey: id) else { break }
                if let refusal {
                    summary.promosRefused += 1
                    log("promo for \(member) refused: \(refusal.contains("already") ? "already used" : "other")")
                } else {
                    try store.db.transaction { try CounterSlots.apply(store.db, writes) }
                    summary.promosCredited += 1
                    log("promo credited to \(member) at store-\(store.index + 1)")
                }
            case .wentOnline:
                store.online = true
                log("store-\(store.index + 1) online")
            case .applyRules:
                break
            case .close(let reason):
                try disconnect(store.index, reason: reason)
            }
        }
    }

    // MARK: The hub's driver (as StoreSession does it)

    func executeHub(_ index: Int, _ actions: [HubSession.Action]) throws {
        let node = stores[index].node
        for action in actions {
            guard var entry = hubSessions[index] else { return }
            var next: [HubSession.Action] = []
            switch action {
            case .send(let message): send(index, toHub: false, message)
            case .loadHighWater(let origin):
                next = entry.session.highWaterLoaded(try hubLedger.originHighWater(hubDB, origin: origin))
            case .merge(let entries):
                do {
                    let high = try hubDB.transaction { try hubLedger.merge(hubDB, from: node, entries: entries) }
                    next = entry.session.merged(upTo: high)
                } catch let error as MergeError {
                    log("hub refused a push of store-\(index + 1): \(error)")
                    next = entry.session.mergeRefused(error.description)
                }
            case .loadFeed(let after, let limit, let excluding, let scopable):
                let feed = try hubLedger.feed(
                    hubDB, after: after, limit: limit, excluding: excluding, scopable: scopable)
                next = entry.session.feedLoaded(
                    feed.entries, upTo: feed.upTo, more: feed.more, snapshots: feed.snapshots)
            case .lookupMember(let id, let card, let hashes):
                let snapshots = try hubDB.transaction {
                    try hubLedger.lookupMember(hubDB, card: card, phoneHashes: hashes, for: node)
                }
                next = entry.session.memberLookedUp(requestID: id, snapshots: snapshots)
            case .grant(let id, let member, let account, let points):
                let grant = try hubDB.transaction {
                    try hubLedger.grant(hubDB, member: member, account: account, to: node, points: points)
                }
                next = entry.session.granted(requestID: id, granted: grant.granted, entry: grant.entry)
            case .activatePromo(let id, let member, let code):
                let outcome = try hubDB.transaction {
                    try hubLedger.activatePromo(hubDB, code: code, member: member, store: node)
                }
                next = entry.session.promoResolved(
                    requestID: id, points: outcome.points, entry: outcome.entry, refusal: outcome.refusal)
            case .loadRules:
                next = entry.session.rulesLoaded(version: 0, document: nil)
            case .storeOnline, .recordTelemetry:
                break
            case .close(let reason):
                log("hub closes store-\(index + 1): \(reason)")
                hubSessions[index] = nil
                try disconnect(index, reason: "hub closed: \(reason)")
                return
            }
            hubSessions[index] = entry
            try executeHub(index, next)
        }
    }

    // MARK: Workload

    static func phone(_ person: Int) -> String {
        let digits = String(person)
        return "+4915" + String(repeating: "0", count: max(0, 9 - digits.count)) + digits
    }

    func register(at storeIndex: Int, index: Int, person: Int? = nil) throws {
        let store = stores[storeIndex]
        setClock(store)
        let card = Self.card(index)
        let person = person ?? index
        let referrer: String? =
            members.isEmpty || !random.chance(0.1)
            ? nil : try memberID(store, card: members[random.int(0...(members.count - 1))].card)
        do {
            _ = try store.db.transaction {
                try store.ledger.register(store.db, card: card, phone: Self.phone(person), referrer: referrer)
            }
            if person != index { summary.duplicateRegistrations += 1 }
            members.append(Member(card: card, person: person, home: storeIndex))
            zipf.grow(to: members.count)
            summary.registrations += 1
            log("register \(card) at store-\(storeIndex + 1)")
            try execute(store, store.session.localChange())
        } catch let error as PosError {
            log("register refused at store-\(storeIndex + 1): \(error)")
        }
    }

    /// The members registered before the day, loaded as the starting state of the hub and of
    /// each member's home store (store index = member index modulo stores), as one that has
    /// run before would hold them; their counters start at zero.
    func preloadMembers() throws {
        var keyBytes = [UInt8](repeating: 7, count: 32)
        let phoneKey = SecretBytes(consuming: &keyBytes)
        // The hub takes them in one transaction, as one import (its member indexes are built
        // once at the end); each store takes its own in one. Each card number is made once.
        var cards = [String](repeating: "", count: config.members)
        try hubDB.transaction {
            try hubLedger.importMembers(hubDB) { add in
                for store in stores {
                    let records = stride(from: store.index, to: config.members, by: config.stores).enumerated().map {
                        serial, index in
                        cards[index] = Self.card(index)
                        return MemberRecord(
                            id: MemberID(origin: store.node, serial: UInt32(serial + 1)), card: cards[index],
                            phoneHash: PhoneNumber(Self.phone(index))!.hash(key: phoneKey), referrer: nil,
                            registeredAt: HLCTimestamp(milliseconds: Self.epoch, logical: 0))
                    }
                    try add(records, try hubLedger.partner(hubDB, of: store.node))
                    try store.db.transaction {
                        try store.ledger.importMembers(store.db, records.map { MemberSnapshot(record: $0, slots: []) })
                    }
                    if store.index % 16 == 0 { reportProgress(Double(store.index) / Double(stores.count)) }
                }
            }
        }
        members = cards.enumerated().map { Member(card: $1, person: $0, home: $0 % config.stores) }
        zipf.grow(to: members.count)
    }

    func memberID(_ store: Store, card: String) throws -> String? {
        (try? store.ledger.identify(store.db, card: card, phone: nil))?.id.description
    }

    func visit() throws {
        if random.chance(0.02) {
            // Now and then a member registers again elsewhere (a second card, the same phone).
            let again = !members.isEmpty && random.chance(config.secondRegistrationChance)
            let person = again ? members[random.int(0...(members.count - 1))].person : members.count
            try register(at: random.int(0...(stores.count - 1)), index: members.count, person: person)
            return
        }
        guard !members.isEmpty else { return }
        let memberIndex = zipf.sample(&random) % members.count
        let member = members[memberIndex]
        let storeIndex = random.chance(0.8) ? member.home : random.int(0...(stores.count - 1))
        let store = stores[storeIndex]
        guard store.up else { return }  // the store is down: the shopper goes elsewhere
        setClock(store)
        if let last = member.purchases.last, last.store == storeIndex, random.chance(0.03) {
            try refund(store, memberIndex: memberIndex, original: last)
            return
        }
        if random.chance(0.01), !promoCodes.isEmpty {
            // Promo codes need the hub: offline the POS says so and nothing is asked.
            guard store.session.isOnline,
                let id = try? store.ledger.identify(store.db, card: member.card, phone: nil).id
            else {
                summary.promosRefused += 1
                return
            }
            let code = promoCodes[random.int(0...(promoCodes.count - 1))]
            let (request, actions) = store.session.requestPromo(member: id, code: code, now: now)
            store.promos[request] = id
            try execute(store, actions)
            return
        }
        if let last = member.purchases.last, last.store == storeIndex, random.chance(0.02) {
            try retry(store, card: member.card, last: last)
            return
        }
        store.receipts += 1
        let amount = UInt64(random.int(50...40_000)) * 100
        var redeem: UInt64 = 0
        if random.chance(0.2), let view = try? store.ledger.identify(store.db, card: member.card, phone: nil),
            view.balance > 0
        {
            redeem = UInt64(random.int(1...Int(min(view.balance, Int64(amount / 100 / 2)))))
        }
        let request = PurchaseRequest(
            card: member.card, amountMinor: amount, redeemPoints: redeem, lane: "\(random.int(1...4))",
            receipt: "S\(storeIndex + 1)-\(store.receipts)")
        if redeem > 0 {
            if store.online {
                summary.onlineRedemptionsRequested += 1
            } else {
                summary.offlineRedemptionsRequested += 1
            }
        }
        try purchase(
            store,
            PendingPurchase(
                member: memberIndex, request: request, grant: [], rounds: 2, redeemRequested: redeem,
                offline: !store.online))
    }

    func connectivity(_ store: Store) -> Connectivity {
        store.online
            ? .online(now: store.clock.local) : .offline(since: store.outageStarted, now: store.clock.local)
    }

    func purchase(_ store: Store, _ pending: PendingPurchase) throws {
        setClock(store)
        let outcome: PurchaseOutcome
        do {
            outcome = try store.db.transaction {
                try store.ledger.purchase(
                    store.db, pending.request, grant: pending.grant, connectivity: connectivity(store))
            }
        } catch let error as PosError {
            if error.code == PosError.unknownMemberCode, !pending.lookedUp, store.session.isOnline {
                // A member this store does not hold (another partner group's, or one the feed
                // has not brought yet): the POS asks the hub, as the edge's API does.
                summary.lookups += 1
                let (id, actions) = store.session.requestMember(
                    card: pending.request.card, phoneHashes: [], now: now)
                store.lookups[id] = pending
                try execute(store, actions)
                return
            }
            summary.purchasesRefused += 1
            log("purchase \(pending.request.receipt) refused at store-\(store.index + 1): \(error.code)")
            return
        }
        switch outcome {
        case .completed(let receipt):
            summary.purchasesAcknowledged += 1
            if pending.redeemRequested > 0 {
                if pending.offline {
                    summary.offlineRedemptionsServed += 1
                } else {
                    summary.onlineRedemptionsServed += 1
                }
            }
            let minute = Int(now / 60_000)
            if summary.perMinute.count <= minute {
                summary.perMinute += Array(repeating: 0, count: minute + 1 - summary.perMinute.count)
            }
            summary.perMinute[minute] += 1
            acknowledged.append(
                Acknowledged(
                    store: store.index, key: "\(pending.request.lane)/\(pending.request.receipt)",
                    amount: pending.request.amountMinor, sequence: receipt.sequence))
            members[pending.member].purchases.append(
                Bought(
                    store: store.index, lane: pending.request.lane, receipt: pending.request.receipt,
                    amount: pending.request.amountMinor, redeemed: pending.request.redeemPoints,
                    sequence: receipt.sequence))
            log(
                "purchase \(pending.request.receipt) at store-\(store.index + 1): seq \(receipt.sequence), +\(receipt.pointsEarned) -\(receipt.pointsRedeemed)"
            )
            try execute(store, store.session.localChange())
        case .needsRights(let member, let account, let shortfall, _):
            guard pending.rounds > 0, store.session.isOnline else {
                summary.purchasesRefused += 1
                return
            }
            let (id, actions) = store.session.requestRights(
                member: member, account: account, points: shortfall, now: now)
            var next = pending
            next.rounds -= 1
            store.pending[id] = next
            try execute(store, actions)
        }
    }

    func refund(_ store: Store, memberIndex: Int, original: Bought) throws {
        store.receipts += 1
        let partial = random.chance(0.5) ? original.amount / 2 : nil
        let request = RefundRequest(
            lane: original.lane, receipt: "R\(store.index + 1)-\(store.receipts)", originalLane: original.lane,
            originalReceipt: original.receipt, amountMinor: partial)
        do {
            let receipt = try store.db.transaction { try store.ledger.refund(store.db, request) }
            summary.refundsAcknowledged += 1
            acknowledged.append(
                Acknowledged(
                    store: store.index, key: "\(request.lane)/\(request.receipt)", amount: receipt.amountMinor,
                    sequence: receipt.sequence))
            log(
                "refund \(request.receipt) of \(original.receipt): -\(receipt.pointsReversed) +\(receipt.pointsReturned)"
            )
            try execute(store, store.session.localChange())
        } catch let error as PosError {
            log("refund of \(original.receipt) refused: \(error.code)")
        }
    }

    /// A POS retrying a purchase it already got an answer for: it must get the same answer.
    func retry(_ store: Store, card: String, last: Bought) throws {
        let request = PurchaseRequest(
            card: card, amountMinor: last.amount, redeemPoints: last.redeemed, lane: last.lane, receipt: last.receipt)
        let outcome: PurchaseOutcome
        do {
            outcome = try store.db.transaction {
                try store.ledger.purchase(store.db, request, connectivity: connectivity(store))
            }
        } catch let error as PosError {
            throw violation(
                "idempotency", "retrying \(last.lane)/\(last.receipt) at store-\(store.index + 1) was refused: \(error)"
            )
        }
        guard case .completed(let receipt) = outcome, receipt.replayed, receipt.sequence == last.sequence else {
            throw violation(
                "idempotency", "retrying \(last.lane)/\(last.receipt) at store-\(store.index + 1) answered \(outcome)")
        }
        summary.retriesReplayed += 1
        log("retry \(last.lane)/\(last.receipt) replayed seq \(receipt.sequence)")
    }

    // MARK: Checks

    /// Measures, for each partition healed, when its stores had caught up with the hub.
    func checkHeals() throws {
        guard !pendingHeals.isEmpty else { return }
        var remaining: [(at: UInt64, stores: [Int: UInt64], feedHead: UInt64)] = []
        for heal in pendingHeals {
            var caughtUp = true
            for (index, end) in heal.stores.sorted(by: { $0.key < $1.key }) {
                let status = try stores[index].ledger.status(stores[index].db)
                if try status.acknowledgedSequence < end || feedPosition(stores[index]) < heal.feedHead {
                    caughtUp = false
                    break
                }
            }
            if caughtUp {
                summary.healConvergence.append(Int(now - heal.at))
                log("heal at \(heal.at) converged after \(now - heal.at) ms")
            } else {
                remaining.append(heal)
            }
        }
        pendingHeals = remaining
    }

    /// How far a store has read the hub's feed: its session's watermark while it runs (an
    /// empty change moves only that), the stored one while it is down.
    func feedPosition(_ store: Store) throws -> UInt64 {
        store.up ? store.session.feedWatermark : try store.ledger.status(store.db).feedWatermark
    }

    func slotsDigest(_ db: any SQLDatabase) throws -> [[SQLValue]] {
        try db.query("SELECT member, account, kind, from_node, to_node, value FROM slots ORDER BY 1, 2, 3, 4, 5").map(
            \.values)
    }

    func isConverged() throws -> Bool {
        guard stores.allSatisfy({ $0.up && $0.online }) else { return false }
        let hubFeed = UInt64(try hubDB.scalar("SELECT COALESCE(MAX(feed_seq), 0) FROM entries") ?? 0)
        // Checked every simulated second after the heal: the two reads it needs per store
        // (its log's end against the hub's acknowledgement), not the whole status.
        for store in stores {
            guard try store.ledger.unsyncedEntries(store.db) == 0, try feedPosition(store) == hubFeed else {
                return false
            }
        }
        guard config.partnerGroups else {
            let hubSlots = try slotsDigest(hubDB)
            return try stores.allSatisfy { try slotsDigest($0.db) == hubSlots }
        }
        return try stores.allSatisfy { try slotsDigest($0.db) == (try expectedSlots($0)) }
    }

    /// With partner-group feeds, the hub's slots a store must hold once converged: those of
    /// the members its group serves.
    func expectedSlots(_ store: Store) throws -> [[SQLValue]] {
        let partners = Self.partnerGroups.partners(inGroupOf: "partner-\(store.index % max(1, config.partners))")
        return try hubDB.query(
            """
            SELECT member, account, kind, from_node, to_node, value FROM slots
            WHERE member IN (SELECT member FROM member_scope WHERE partner IN (
            """ + partners.map { _ in "?" }.joined(separator: ", ") + ")) ORDER BY 1, 2, 3, 4, 5",
            partners.map { .text($0) }
        ).map(\.values)
    }

    func divergence() throws -> String {
        let hubFeed = try hubDB.scalar("SELECT COALESCE(MAX(feed_seq), 0) FROM entries") ?? 0
        return try stores.map { store in
            let status = try store.ledger.status(store.db)
            return
                "store-\(store.index + 1) up \(store.up) online \(store.online) log \(status.lastSequence) acked \(status.acknowledgedSequence) feed \(try feedPosition(store))/\(hubFeed)"
        }.joined(separator: "; ")
    }

    func checkInvariants() throws {
        // Every acknowledged operation is at the hub exactly once, with its amount.
        var seen: [String: Int] = [:]
        var promoCredits: [MemberID: Int64] = [:]
        var codesUsed: [String: Int] = [:]
        var operations: [MemberID: (earned: Int64, spent: Int64, reversed: Int64, uncovered: Int64)] = [:]
        // The counters the log's slot writes add up to, replayed from scratch (a plain map:
        // a replica's change versions are not needed here).
        var replayed: [AccountKey: EscrowCounter] = [:]
        // In storage order: every figure below is a sum or a maximum, whatever the order.
        let rows = try hubDB.query("SELECT entry FROM entries")
        replayed.reserveCapacity(rows.count)
        for row in rows {
            let entry = try LogEntry(decoding: row.blob(0))
            for write in entry.effects {
                replayed[AccountKey(member: write.member, account: write.account), default: EscrowCounter()].apply(
                    write.slot, write.value)
            }
            if !entry.idempotencyKey.isEmpty {
                seen["\(entry.origin.rawValue)|\(entry.idempotencyKey)", default: 0] += 1
            }
            switch entry.operation {
            case .purchase(let purchase):
                operations[purchase.member, default: (0, 0, 0, 0)].earned += Int64(purchase.pointsEarned)
                operations[purchase.member, default: (0, 0, 0, 0)].spent += Int64(purchase.pointsRedeemed)
                operations[purchase.member, default: (0, 0, 0, 0)].uncovered += Int64(purchase.uncoveredPoints)
            case .refund(let refund):
                operations[refund.member, default: (0, 0, 0, 0)].earned -= Int64(refund.pointsReversed)
                operations[refund.member, default: (0, 0, 0, 0)].spent -= Int64(refund.pointsReturned)
                operations[refund.member, default: (0, 0, 0, 0)].reversed += Int64(refund.pointsReversed)
            case .expiry(let member, let points, _):
                operations[member, default: (0, 0, 0, 0)].spent += Int64(points)
            case .promoCredit(let member, let code, let points):
                promoCredits[member, default: 0] += Int64(points)
                codesUsed[code, default: 0] += 1
            case .memberMerge(let merge) where merge.account == .main:
                operations[merge.merged, default: (0, 0, 0, 0)].spent += Int64(merge.points + merge.reversed)
                operations[merge.survivor, default: (0, 0, 0, 0)].earned += Int64(merge.points)
            case .memberMerge(let merge):
                promoCredits[merge.merged, default: 0] -= Int64(merge.points + merge.reversed)
                promoCredits[merge.survivor, default: 0] += Int64(merge.points)
            default: break
            }
        }
        for ack in acknowledged {
            let key = "\(stores[ack.store].node.rawValue)|\(ack.key)"
            guard seen[key] == 1 else {
                throw violation(
                    "no acknowledged operation lost or doubled", "\(key) is at the hub \(seen[key] ?? 0) times")
            }
        }
        if let twice = codesUsed.sorted(by: { $0.key < $1.key }).first(where: { $0.value > 1 }) {
            throw violation("promo codes are single-use", "\(twice.key) credited \(twice.value) times")
        }
        for (member, credited) in promoCredits.sorted(by: { $0.key < $1.key }) {
            let promo = try hubLedger.counter(hubDB, member: member, account: .promo)
            guard promo.balance == credited else {
                throw violation("conservation", "member \(member): promo balance \(promo.balance), credits \(credited)")
            }
        }
        // Conservation, no overdraft beyond the allowance, rights conserved.
        let nodes = Set([NodeID.hub] + stores.map(\.node))
        for (member, figures) in operations.sorted(by: { $0.key < $1.key }) {
            let counter = try hubLedger.counter(hubDB, member: member, account: .main)
            guard counter.balance == figures.earned - figures.spent else {
                throw violation(
                    "conservation",
                    "member \(member): balance \(counter.balance), the log says \(figures.earned - figures.spent)")
            }
            guard counter.balance + figures.reversed + figures.uncovered >= 0 else {
                throw violation("no overdraft", "member \(member) at \(counter.balance) beyond refunds and allowance")
            }
            let rights = counter.rights(among: nodes)
            guard rights == counter.balance else {
                throw violation(
                    "rights conserved", "member \(member): rights sum \(rights), balance \(counter.balance)")
            }
            let fromLog = replayed[AccountKey(member: member, account: .main)] ?? EscrowCounter()
            guard fromLog.balance == counter.balance else {
                throw violation(
                    "slots equal the log", "member \(member): replayed \(fromLog.balance), stored \(counter.balance)")
            }
        }
    }
}

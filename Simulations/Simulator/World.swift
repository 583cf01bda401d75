import Foundation

/// What a run simulates: the chain, the members, how long.
public struct SimulationConfig: Sendable {
    public var seed: UInt64
    public var stores: Int
    /// Members registered before the day starts (more register during it).
    public var members: Int
    public var days: Double
    /// Stores are grouped into regions (store index modulo regions) for regional partitions.
    public var regions: Int = 3
    /// Shoppers per store per day at the busiest rhythm (spread by a daily and weekly rhythm).
    public var visitsPerStorePerDay: Double = 400
    /// Who shops: the member of activity rank r (0 the most active) is drawn in proportion to
    /// 1 / (r + 1 + q), a Zipf–Mandelbrot law with q this share of the starting members. With
    /// 0.04 the busiest member shops about eight times as often as the average one and the
    /// least active about a third as often, whatever the world's size. Plain Zipf (0) gives
    /// the busiest member one visit in ln(members) of the whole chain's: thousands a day.
    public var activityOffset: Double = 0.04
    /// Simulated time the liveness phase may take to converge after healing.
    public var convergenceBoundMilliseconds: UInt64 = 10 * 60_000
    /// Record every event line (replay) rather than only a hash and the last lines.
    public var recordTrace = false
    /// Of the registrations during the day, the share that is a member registering again at
    /// some store (a new card, the same phone), which the hub must merge.
    public var secondRegistrationChance = 0.05
    /// Rights placement days (the rules' `[placement] days`; 0: stores hand every right back).
    public var placementDays: UInt64 = 0
    /// Partner-group feeds: partners 0 and 1 form one group, partner 2 another (stores are
    /// partner index modulo 3); a store holds its group's members and looks up the others.
    public var partnerGroups = false
    /// Partners in the coalition: store i belongs to partner i modulo this (with as many
    /// partners as stores and partner-group feeds, each store holds its own members and the
    /// shoppers it has served).
    public var partners = 3
    /// How often each store pulls the hub's feed (it pushes at once after every operation).
    public var syncIntervalMilliseconds: UInt64 = 5_000
    /// Load the members registered before the day as the hub's and their home stores'
    /// starting state, instead of registering each through the network first (a world that
    /// has run before; large worlds start in seconds). Their counters start at zero.
    public var preloadMembers = false

    public init(seed: UInt64, stores: Int = 6, members: Int = 300, days: Double = 1) {
        self.seed = seed
        self.stores = stores
        self.members = members
        self.days = days
    }
}

/// The faults of one run, drawn from its seed (as TigerBeetle's simulator does), so a sweep
/// explores calm and hostile worlds alike.
public struct FaultMix: Sendable, CustomStringConvertible {
    /// Probability that a message is lost, or delivered twice.
    public var loss: Double
    public var duplication: Double
    /// One-way latency: base plus a uniform spread (messages overtake each other).
    public var latencyMilliseconds: UInt64
    public var latencySpreadMilliseconds: UInt64
    /// Partitions started per simulated hour, and their mean length.
    public var partitionsPerHour: Double
    public var partitionMeanMinutes: Double
    /// Store crashes per store per day; hub crashes per day.
    public var storeCrashesPerDay: Double
    public var hubCrashesPerDay: Double
    /// Clock offsets up to this (either way) and drift up to this many parts per million.
    public var maxSkewMilliseconds: Int64
    public var maxDriftPPM: Int64

    public static func draw(_ random: inout SimRandom) -> FaultMix {
        // Each knob is calm, moderate or hostile on its own.
        func level() -> Int { random.int(0...2) }
        let lossLevel = level()
        let partitionLevel = level()
        let crashLevel = level()
        let clockLevel = level()
        return FaultMix(
            loss: [0, 0.01, 0.08][lossLevel], duplication: [0, 0.01, 0.05][lossLevel],
            latencyMilliseconds: UInt64(random.int(1...40)), latencySpreadMilliseconds: UInt64(random.int(0...200)),
            partitionsPerHour: [0, 0.5, 3][partitionLevel], partitionMeanMinutes: [0, 10, 45][partitionLevel],
            storeCrashesPerDay: [0, 0.5, 4][crashLevel], hubCrashesPerDay: [0, 0.3, 2][crashLevel],
            maxSkewMilliseconds: [0, 2_000, 60_000][clockLevel], maxDriftPPM: [0, 50, 500][clockLevel])
    }

    public var description: String {
        String(
            format:
                "loss %.0f%%, dup %.0f%%, latency %d+%d ms, %.1f partitions/h (~%.0f min), crashes %.1f/store/day and %.1f hub/day, skew ±%d ms, drift ±%d ppm",
            loss * 100, duplication * 100, latencyMilliseconds, latencySpreadMilliseconds, partitionsPerHour,
            partitionMeanMinutes, storeCrashesPerDay, hubCrashesPerDay, maxSkewMilliseconds, maxDriftPPM)
    }
}

/// A discrete-event queue: earliest time first, then insertion order (so ties replay alike).
struct EventQueue<Event> {
    private var heap: [(time: UInt64, order: UInt64, event: Event)] = []
    private var inserted: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var peekTime: UInt64? { heap.first?.time }
    var count: Int { heap.count }

    mutating func push(_ time: UInt64, _ event: Event) {
        inserted += 1
        heap.append((time, inserted, event))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard Self.before(heap[child], heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (time: UInt64, event: Event)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count, Self.before(heap[left], heap[smallest]) { smallest = left }
            if right < heap.count, Self.before(heap[right], heap[smallest]) { smallest = right }
            guard smallest != parent else { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return (top.time, top.event)
    }

    private static func before(
        _ a: (time: UInt64, order: UInt64, event: Event), _ b: (time: UInt64, order: UInt64, event: Event)
    ) -> Bool {
        a.time != b.time ? a.time < b.time : a.order < b.order
    }
}

/// A 64-bit FNV-1a hash of the event lines: two runs of one seed must produce the same.
struct TraceHash {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func add(_ line: String) {
        for byte in line.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x100_0000_01B3
        }
        value ^= 0x0A
        value = value &* 0x100_0000_01B3
    }
}

import Dispatch

/// Monotonic time in nanoseconds, for measuring durations.
public func monotonicNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// The durations of the last `capacity` requests of one kind, for percentiles an operator can
/// read while the node runs (node.status). Written and read on one thread (the loop's).
public struct LatencyWindow: Sendable {
    public let capacity: Int
    private var microseconds: [UInt32] = []
    private var next = 0
    /// Requests recorded since the node started, whether still in the window or not.
    public private(set) var total: UInt64 = 0

    public init(capacity: Int = 4_096) {
        precondition(capacity > 0, "a latency window holds at least one request")
        self.capacity = capacity
        microseconds.reserveCapacity(capacity)
    }

    /// Records one request that took `nanoseconds`; the oldest leaves a full window.
    public mutating func record(nanoseconds: UInt64) {
        let value = UInt32(min(nanoseconds / 1_000, UInt64(UInt32.max)))
        if microseconds.count < capacity {
            microseconds.append(value)
        } else {
            microseconds[next] = value
        }
        next = (next + 1) % capacity
        total += 1
    }

    /// Requests in the window.
    public var count: Int { microseconds.count }

    /// The nearest-rank percentiles of the window, in microseconds, for each `p` in 0...1
    /// (nil when the window is empty).
    public func percentiles(_ ps: [Double]) -> [UInt32]? {
        guard !microseconds.isEmpty else { return nil }
        let sorted = microseconds.sorted()
        return ps.map { p in
            let rank = Int((p * Double(sorted.count)).rounded(.up))
            return sorted[min(sorted.count, max(1, rank)) - 1]
        }
    }
}

/// Shared by every handshake a responder runs: refuses a replayed first message and a
/// peer's timestamp that does not move forward (as WireGuard does with TAI64N stamps).
public final class HandshakeGuard {
    private var seenEphemerals: Set<[UInt8]> = []
    private var seenOrder: [[UInt8]] = []
    private var lastTimestamp: [PublicKey: UInt64] = [:]
    public let capacity: Int

    public init(capacity: Int = 100_000) { self.capacity = capacity }

    /// Records a first message's ephemeral key; false if it was seen before (a replay).
    func admitFirstMessage(ephemeral: [UInt8]) -> Bool {
        guard seenEphemerals.insert(ephemeral).inserted else { return false }
        seenOrder.append(ephemeral)
        if seenOrder.count > capacity {
            let drop = seenOrder.count - capacity
            for old in seenOrder.prefix(drop) { seenEphemerals.remove(old) }
            seenOrder.removeFirst(drop)
        }
        return true
    }

    /// Accepts an authenticated peer's handshake timestamp only if it is newer than the last.
    func admit(peer: PublicKey, timestamp: UInt64) -> Bool {
        if let last = lastTimestamp[peer], timestamp <= last { return false }
        lastTimestamp[peer] = timestamp
        return true
    }
}

/// A token bucket per peer address: at most `rate` handshakes per second, bursts of `burst`.
public struct HandshakeRateLimiter: Sendable {
    public let ratePerSecond: Double
    public let burst: Double
    private var buckets: [String: (tokens: Double, at: UInt64)] = [:]

    public init(ratePerSecond: Double = 5, burst: Double = 10) {
        self.ratePerSecond = ratePerSecond
        self.burst = burst
    }

    /// Whether `peer` may start a handshake at `now` (milliseconds).
    public mutating func allow(_ peer: String, now: UInt64) -> Bool {
        var bucket = buckets[peer] ?? (burst, now)
        let elapsed = Double(now &- bucket.at) / 1000
        bucket.tokens = min(burst, bucket.tokens + elapsed * ratePerSecond)
        bucket.at = now
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        buckets[peer] = bucket
        if buckets.count > 50_000 { buckets = buckets.filter { $0.value.tokens < burst } }
        return allowed
    }
}

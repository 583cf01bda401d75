import Foundation

/// A seeded generator (xoshiro256**, seeded through SplitMix64): the simulator's only
/// source of randomness, so a seed replays a run bit for bit.
public struct SimRandom: RandomNumberGenerator, Sendable {
    private var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = ((state.1 &* 5) << 7 | (state.1 &* 5) >> 57) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = state.3 << 45 | state.3 >> 19
        return result
    }

    /// A uniform double in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }

    public mutating func chance(_ probability: Double) -> Bool { unit() < probability }

    /// An integer in `range` (inclusive).
    public mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    /// An exponentially distributed wait with this mean.
    public mutating func exponential(mean: Double) -> Double { -mean * Foundation.log(max(1e-12, 1 - unit())) }
}

/// Zipf–Mandelbrot-distributed ranks 0..<n: rank r (0 the most frequent) is drawn in
/// proportion to 1 / (r + 1 + offset)^exponent (offset 0 is the plain Zipf law), sampled by
/// inverting a precomputed cumulative table.
public struct Zipf: Sendable {
    private var cumulative: [Double] = []
    private let exponent: Double
    private let offset: Double

    public init(count: Int, exponent: Double = 1.0, offset: Double = 0) {
        self.exponent = exponent
        self.offset = max(0, offset)
        grow(to: count)
    }

    /// Extends the table to `count` ranks (members register during the run).
    public mutating func grow(to count: Int) {
        var total = cumulative.last ?? 0
        // Doubling: a registration adds one rank, and reserving just that would copy the
        // whole table (8 bytes a member) every time.
        if cumulative.capacity < count { cumulative.reserveCapacity(max(count, 2 * cumulative.capacity)) }
        while cumulative.count < count {
            total += 1 / Foundation.pow(Double(cumulative.count + 1) + offset, exponent)
            cumulative.append(total)
        }
    }

    public var count: Int { cumulative.count }

    public func sample(_ random: inout SimRandom) -> Int {
        guard let total = cumulative.last else { return 0 }
        let target = random.unit() * total
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let middle = (low + high) / 2
            if cumulative[middle] < target { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

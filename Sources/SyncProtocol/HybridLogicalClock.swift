/// A hybrid logical clock stamp: 48 bits of Unix milliseconds and a 16-bit logical counter.
/// Stamps order the events of the whole network consistently with causality.
public struct HLCTimestamp: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(milliseconds: UInt64, logical: UInt16) {
        rawValue = (milliseconds & 0xFFFF_FFFF_FFFF) << 16 | UInt64(logical)
    }

    public var milliseconds: UInt64 { rawValue >> 16 }
    public var logical: UInt16 { UInt16(truncatingIfNeeded: rawValue) }
    public var description: String { "\(milliseconds).\(logical)" }
    public static func < (lhs: HLCTimestamp, rhs: HLCTimestamp) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Why a clock refused a stamp.
public enum ClockError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A remote stamp lies further ahead of our wall clock than the configured bound.
    case remoteTooFarAhead(remote: HLCTimestamp, wallMilliseconds: UInt64, boundMilliseconds: UInt64)
    /// The 16-bit logical counter would overflow within one millisecond.
    case logicalOverflow

    public var description: String {
        switch self {
        case .remoteTooFarAhead(let remote, let wall, let bound):
            return "remote clock \(remote.milliseconds) ms is \(remote.milliseconds - wall) ms ahead of ours "
                + "(bound \(bound) ms); check the clock of the sending node"
        case .logicalOverflow: return "hybrid clock logical counter overflow"
        }
    }
}

/// The hybrid logical clock of Kulkarni et al.: never goes backwards even when the wall
/// clock does, and refuses remote stamps too far in the future instead of being dragged along.
public struct HybridLogicalClock: Sendable {
    public private(set) var last: HLCTimestamp
    public let maxForwardDriftMilliseconds: UInt64

    public init(last: HLCTimestamp = HLCTimestamp(rawValue: 0), maxForwardDriftMilliseconds: UInt64 = 60_000) {
        self.last = last
        self.maxForwardDriftMilliseconds = maxForwardDriftMilliseconds
    }

    /// A stamp for a local event at wall time `wall` (Unix milliseconds).
    public mutating func now(wall: UInt64) throws(ClockError) -> HLCTimestamp {
        if wall > last.milliseconds {
            last = HLCTimestamp(milliseconds: wall, logical: 0)
        } else {
            guard last.logical < UInt16.max else { throw .logicalOverflow }
            last = HLCTimestamp(milliseconds: last.milliseconds, logical: last.logical + 1)
        }
        return last
    }

    /// Folds in a stamp received from another node.
    public mutating func observe(_ remote: HLCTimestamp, wall: UInt64) throws(ClockError) {
        if remote.milliseconds > wall, remote.milliseconds - wall > maxForwardDriftMilliseconds {
            throw .remoteTooFarAhead(
                remote: remote, wallMilliseconds: wall, boundMilliseconds: maxForwardDriftMilliseconds)
        }
        let top = max(wall, last.milliseconds, remote.milliseconds)
        var logical: UInt16 = 0
        if top == last.milliseconds && top == remote.milliseconds {
            logical = max(last.logical, remote.logical)
        } else if top == last.milliseconds {
            logical = last.logical
        } else if top == remote.milliseconds {
            logical = remote.logical
        } else {
            last = HLCTimestamp(milliseconds: top, logical: 0)
            return
        }
        guard logical < UInt16.max else { throw .logicalOverflow }
        last = HLCTimestamp(milliseconds: top, logical: logical + 1)
    }
}

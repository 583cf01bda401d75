/// A node of the coalition network: the hub is node 0, each enrolled store has its own id.
public struct NodeID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// The hub's node id. Stores are numbered from 1 at enrollment.
    public static let hub = NodeID(0)

    public var isHub: Bool { rawValue == 0 }
    public var description: String { isHub ? "hub" : "store-\(rawValue)" }
    public static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A member's globally unique id, minted without coordination by the node that registered
/// the member: the high 32 bits are that node, the low 32 bits its registration serial.
public struct MemberID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(origin: NodeID, serial: UInt32) {
        rawValue = UInt64(origin.rawValue) << 32 | UInt64(serial)
    }

    public var origin: NodeID { NodeID(UInt32(truncatingIfNeeded: rawValue >> 32)) }

    /// Sixteen hex digits, the form used in the POS API and reports.
    public var description: String {
        let hex = String(rawValue, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Parses the sixteen-hex-digit form.
    public init?(_ text: String) {
        guard text.count == 16, let value = UInt64(text, radix: 16) else { return nil }
        rawValue = value
    }

    public static func < (lhs: MemberID, rhs: MemberID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A member's point accounts: `main` collects purchase points, `promo` promo-code points.
public enum Account: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case main = 0
    case promo = 1

    public var description: String { self == .main ? "main" : "promo" }
    public init?(name: String) {
        switch name {
        case "main": self = .main
        case "promo": self = .promo
        default: return nil
        }
    }
}

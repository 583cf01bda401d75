import NodeKit
import SyncProtocol

/// An error answered to a POS lane: a stable numeric code, a message a cashier's support
/// line can act on, and optional data (for example how many points are redeemable now).
public struct PosError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int
    public let message: String
    public let data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public var description: String { "error \(code): \(message)" }

    // JSON-RPC 2.0 protocol errors.
    public static func parseError(_ detail: String) -> PosError {
        PosError(code: -32700, message: "parse error: \(detail)")
    }
    public static func invalidRequest(_ detail: String) -> PosError {
        PosError(code: -32600, message: "invalid request: \(detail)")
    }
    /// The code of `methodNotFound`.
    public static let methodNotFoundCode = -32601
    public static func methodNotFound(_ method: String) -> PosError {
        PosError(code: methodNotFoundCode, message: "unknown method '\(method)'")
    }
    public static func invalidParams(_ detail: String) -> PosError {
        PosError(code: -32602, message: "invalid params: \(detail)")
    }

    // Loyalty errors (documented in docs/pos-api.md).
    /// The code of `unknownMember`.
    public static let unknownMemberCode = 1001
    public static func unknownMember(_ what: String) -> PosError {
        PosError(code: unknownMemberCode, message: "no member with \(what) is known at this store")
    }
    public static func invalidCard(_ detail: String) -> PosError { PosError(code: 1002, message: detail) }
    /// The code of `insufficientPoints`: a redemption refused for lack of points or rights.
    public static let insufficientPointsCode = 1003
    public static func insufficientPoints(requested: UInt64, redeemable: UInt64, online: Bool) -> PosError {
        PosError(
            code: insufficientPointsCode,
            message: "cannot redeem \(requested) points: \(redeemable) points are redeemable at this store now"
                + (online ? "" : " (store offline: only points held here can be redeemed)"),
            data: .object(["redeemable": .int(Int64(redeemable)), "requested": .int(Int64(requested))]))
    }
    public static func cardTaken(_ card: String) -> PosError {
        PosError(code: 1004, message: "card \(card) is already registered")
    }
    public static func hubUnreachable(_ what: String) -> PosError {
        PosError(code: 1005, message: "\(what) needs the hub, which is unreachable now; retry when the store is online")
    }
    public static func invalidAmount(_ detail: String) -> PosError { PosError(code: 1006, message: detail) }
    public static func storage(_ detail: String) -> PosError {
        PosError(code: 1007, message: "the store's database failed: \(detail); the operation was not recorded")
    }
    public static func receiptConflict(_ key: String) -> PosError {
        PosError(
            code: 1008,
            message: "receipt \(key) was already used for a different purchase; use a new receipt id")
    }
    public static func unknownPurchase(store: NodeID, key: String, here: Bool) -> PosError {
        PosError(
            code: 1011,
            message: here
                ? "no purchase with receipt \(key) was made at this store"
                : "purchase \(key) of \(store) is not known here yet; it arrives once both stores have synced with the hub"
        )
    }
    public static func refundTooLarge(requested: UInt64, refundable: UInt64) -> PosError {
        PosError(
            code: 1012,
            message: "cannot refund \(requested): \(refundable) minor units of this purchase are left to refund",
            data: .object(["refundable": .int(Int64(refundable))]))
    }
    public static func promoRefused(_ reason: String) -> PosError {
        PosError(code: 1013, message: "promo code refused: \(reason)")
    }
    public static func redeemAboveLimit(requested: UInt64, limit: UInt64) -> PosError {
        PosError(
            code: 1009, message: "at most \(limit) points can pay this check (\(requested) requested)",
            data: .object(["limit": .int(Int64(limit))]))
    }
}

/// A partner's point economics, shared by edge and hub so both compute the same points.
/// Integer arithmetic throughout; every division rounds down (in the member's disfavour by
/// less than one point, never in the partner's by more).
public struct PartnerRules: Sendable, Equatable {
    /// Share of the paid amount given back as points, in basis points (500 = 5 %).
    public var accrualBasisPoints: UInt64
    /// Minor currency units one point is worth at redemption (100 = 1 rouble).
    public var minorUnitsPerPoint: UInt64
    /// Largest share of a check payable with points, in basis points (3000 = 30 %).
    public var maxRedeemBasisPoints: UInt64
    /// Days points earned at this partner stay pending (not redeemable) while the purchase
    /// can still be returned; 0 makes them redeemable at once.
    public var pendingDays: UInt64

    public init(
        accrualBasisPoints: UInt64 = 500, minorUnitsPerPoint: UInt64 = 100, maxRedeemBasisPoints: UInt64 = 3000,
        pendingDays: UInt64 = 0
    ) {
        self.pendingDays = pendingDays
        self.accrualBasisPoints = accrualBasisPoints
        self.minorUnitsPerPoint = minorUnitsPerPoint
        self.maxRedeemBasisPoints = maxRedeemBasisPoints
    }

    /// Most points a check of `amountMinor` may be paid with.
    public func maxRedeemablePoints(amountMinor: UInt64) -> UInt64 {
        mulDiv(amountMinor, maxRedeemBasisPoints, 10_000 * minorUnitsPerPoint)
    }

    /// Points earned on the part of the check paid with money.
    public func pointsEarned(paidMinor: UInt64) -> UInt64 {
        mulDiv(paidMinor, accrualBasisPoints, 10_000 * minorUnitsPerPoint)
    }

    /// What the member pays after redeeming `points`.
    public func paidMinor(amountMinor: UInt64, redeemedPoints: UInt64) -> UInt64 {
        let (discount, overflow) = redeemedPoints.multipliedReportingOverflow(by: minorUnitsPerPoint)
        return overflow || discount >= amountMinor ? 0 : amountMinor - discount
    }
}

/// ⌊a·b/d⌋ without intermediate overflow; saturates at `UInt64.max`.
public func mulDiv(_ a: UInt64, _ b: UInt64, _ d: UInt64) -> UInt64 {
    precondition(d > 0)
    let product = a.multipliedFullWidth(by: b)
    guard product.high < d else { return .max }
    return d.dividingFullWidth(product).quotient
}

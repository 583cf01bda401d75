/// The operator's offline risk policy: how far beyond the rights it holds a store may let
/// members redeem while the hub is unreachable, as card terminals bound offline payments
/// (floor limits, consecutive-offline limits). All zero (the default) allows nothing
/// uncovered: with it no outage can overdraw a member.
public struct OfflinePolicy: Sendable, Equatable {
    /// Largest uncovered part of one redemption.
    public var maxPointsPerRedemption: UInt64 = 0
    /// Per member, during one outage: uncovered points and the number of such redemptions.
    public var maxPointsPerMember: UInt64 = 0
    public var maxRedemptionsPerMember: UInt64 = 0
    /// Per store, during one outage.
    public var maxPointsPerStore: UInt64 = 0
    public var maxRedemptionsPerStore: UInt64 = 0
    /// After an outage this long, uncovered redemption stops.
    public var maxOutageMilliseconds: UInt64 = 0

    public init() {}

    public var allowsNothing: Bool {
        maxPointsPerRedemption == 0 || maxPointsPerMember == 0 || maxPointsPerStore == 0
            || maxRedemptionsPerMember == 0 || maxRedemptionsPerStore == 0 || maxOutageMilliseconds == 0
    }
}

/// Whether the store can reach the hub, and since when it cannot (wall-clock milliseconds).
public struct Connectivity: Sendable, Equatable {
    public var online: Bool
    public var outageStartedMilliseconds: UInt64
    public var nowMilliseconds: UInt64

    public static func online(now: UInt64) -> Connectivity {
        Connectivity(online: true, outageStartedMilliseconds: 0, nowMilliseconds: now)
    }

    public static func offline(since start: UInt64, now: UInt64) -> Connectivity {
        Connectivity(online: false, outageStartedMilliseconds: start, nowMilliseconds: now)
    }
}

/// Uncovered redemptions so far in an outage.
public struct ExposureUse: Sendable, Equatable {
    public var memberPoints: UInt64 = 0
    public var memberCount: UInt64 = 0
    public var storePoints: UInt64 = 0
    public var storeCount: UInt64 = 0

    public init(memberPoints: UInt64 = 0, memberCount: UInt64 = 0, storePoints: UInt64 = 0, storeCount: UInt64 = 0) {
        self.memberPoints = memberPoints
        self.memberCount = memberCount
        self.storePoints = storePoints
        self.storeCount = storeCount
    }
}

extension OfflinePolicy {
    /// Points that may still be redeemed uncovered for this member now.
    public func allowance(used: ExposureUse, connectivity: Connectivity) -> UInt64 {
        guard !connectivity.online, !allowsNothing else { return 0 }
        let age = connectivity.nowMilliseconds &- connectivity.outageStartedMilliseconds
        guard age <= maxOutageMilliseconds else { return 0 }
        guard used.memberCount < maxRedemptionsPerMember, used.storeCount < maxRedemptionsPerStore else { return 0 }
        let memberLeft = maxPointsPerMember - min(maxPointsPerMember, used.memberPoints)
        let storeLeft = maxPointsPerStore - min(maxPointsPerStore, used.storePoints)
        return min(maxPointsPerRedemption, memberLeft, storeLeft)
    }
}

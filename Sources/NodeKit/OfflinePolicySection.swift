import SyncProtocol

/// The `[offline]` section of a configuration or rules file: the offline risk policy, with
/// every key optional.
public struct OfflinePolicySection: Decodable, Sendable, Equatable {
    public var maxPointsPerRedemption: UInt64?
    public var maxPointsPerMember: UInt64?
    public var maxRedemptionsPerMember: UInt64?
    public var maxPointsPerStore: UInt64?
    public var maxRedemptionsPerStore: UInt64?
    public var maxOutageMinutes: UInt64?

    public init(
        maxPointsPerRedemption: UInt64? = nil, maxPointsPerMember: UInt64? = nil,
        maxRedemptionsPerMember: UInt64? = nil,
        maxPointsPerStore: UInt64? = nil, maxRedemptionsPerStore: UInt64? = nil, maxOutageMinutes: UInt64? = nil
    ) {
        self.maxPointsPerRedemption = maxPointsPerRedemption
        self.maxPointsPerMember = maxPointsPerMember
        self.maxRedemptionsPerMember = maxRedemptionsPerMember
        self.maxPointsPerStore = maxPointsPerStore
        self.maxRedemptionsPerStore = maxRedemptionsPerStore
        self.maxOutageMinutes = maxOutageMinutes
    }

    enum CodingKeys: String, CodingKey {
        case maxPointsPerRedemption = "max_points_per_redemption"
        case maxPointsPerMember = "max_points_per_member"
        case maxRedemptionsPerMember = "max_redemptions_per_member"
        case maxPointsPerStore = "max_points_per_store"
        case maxRedemptionsPerStore = "max_redemptions_per_store"
        case maxOutageMinutes = "max_outage_minutes"
    }

    /// The policy these keys describe, each missing key taken from `base`.
    public func policy(over base: OfflinePolicy = OfflinePolicy()) -> OfflinePolicy {
        var policy = base
        policy.maxPointsPerRedemption = maxPointsPerRedemption ?? base.maxPointsPerRedemption
        policy.maxPointsPerMember = maxPointsPerMember ?? base.maxPointsPerMember
        policy.maxRedemptionsPerMember = maxRedemptionsPerMember ?? base.maxRedemptionsPerMember
        policy.maxPointsPerStore = maxPointsPerStore ?? base.maxPointsPerStore
        policy.maxRedemptionsPerStore = maxRedemptionsPerStore ?? base.maxRedemptionsPerStore
        policy.maxOutageMilliseconds = maxOutageMinutes.map { $0 * 60_000 } ?? base.maxOutageMilliseconds
        return policy
    }
}

/// The coalition's rules as the hub publishes them: partner economics, the offline risk
/// policy, and the key stores hash phone numbers with. Versioned; signed by the hub with
/// its long-term key, so a store applies only what its pinned hub signed, and never an
/// older version than it runs.
public struct RulesDocument: Sendable, Equatable {
    public var version: UInt64
    public var issuedAtMilliseconds: UInt64
    /// Coalition-wide key for phone-number hashes (32 bytes). Fixed for the program's life:
    /// a new key would orphan every stored hash.
    public var phoneKey: [UInt8]
    /// Economics for a store whose partner has no entry of its own.
    public var defaultPartner: PartnerRules
    public var partners: [String: PartnerRules]
    public var offline: OfflinePolicy
    /// Points for joining, and for each side of a referral (the new member and the referrer).
    public var welcomeBonus: UInt64
    public var referralBonus: UInt64
    /// The programme's time zone, as minutes east of UTC (Moscow: 180); campaign dates and
    /// calendar months are counted in it.
    public var timeZoneOffsetMinutes: Int32
    public var campaigns: [Campaign]
    /// Tiers: a member whose net spend in a calendar month reaches `vipThresholdMinor` earns
    /// with `vipMultiplierPercent` throughout the next month (0 disables tiers).
    public var vipThresholdMinor: UInt64
    public var vipMultiplierPercent: UInt64
    /// Rights placement: a store keeps the redemption rights of members whose most recent
    /// purchase was there within this many days, and the hub places the rights it holds for
    /// them there, so regulars can redeem while their store is offline. 0 (the default): every
    /// store hands rights back to the hub at its next sync, which serves online redemptions
    /// anywhere best. Written only when set, so documents without it keep their bytes.
    public var placementDays: UInt64 = 0
    /// Which members' changes each store receives (the whole feed by default). Written only
    /// when partner groups are set, after `placementDays`.
    public var feedScope = FeedScope.all

    public init(
        version: UInt64, issuedAtMilliseconds: UInt64, phoneKey: [UInt8], defaultPartner: PartnerRules = PartnerRules(),
        partners: [String: PartnerRules] = [:], offline: OfflinePolicy = OfflinePolicy(), welcomeBonus: UInt64 = 0,
        referralBonus: UInt64 = 0, timeZoneOffsetMinutes: Int32 = 0, campaigns: [Campaign] = [],
        vipThresholdMinor: UInt64 = 0, vipMultiplierPercent: UInt64 = 100
    ) {
        self.vipThresholdMinor = vipThresholdMinor
        self.vipMultiplierPercent = vipMultiplierPercent
        self.timeZoneOffsetMinutes = timeZoneOffsetMinutes
        self.campaigns = campaigns
        self.welcomeBonus = welcomeBonus
        self.referralBonus = referralBonus
        self.version = version
        self.issuedAtMilliseconds = issuedAtMilliseconds
        self.phoneKey = phoneKey
        self.defaultPartner = defaultPartner
        self.partners = partners
        self.offline = offline
    }

    public func partner(_ name: String?) -> PartnerRules { name.flatMap { partners[$0] } ?? defaultPartner }

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case badSignature
        case malformed(String)
        case invalid(String)

        public var description: String {
            switch self {
            case .badSignature: return "rules document is not signed by the pinned hub key; not applied"
            case .malformed(let why): return "rules document is malformed: \(why)"
            case .invalid(let why): return "rules document is invalid: \(why)"
            }
        }
    }

    /// Checks the values a store would act on.
    public func validate() throws(Failure) {
        guard phoneKey.count == 32 else { throw .invalid("phone key must be 32 bytes") }
        guard welcomeBonus <= 1_000_000_000, referralBonus <= 1_000_000_000 else {
            throw .invalid("bonuses above 1,000,000,000 points")
        }
        guard abs(Int(timeZoneOffsetMinutes)) <= 14 * 60 else { throw .invalid("time zone offset beyond ±14 h") }
        guard placementDays <= 365 else { throw .invalid("rights placement for more than 365 days") }
        try feedScope.validate()
        guard vipMultiplierPercent >= 100, vipMultiplierPercent <= 10_000 else {
            throw .invalid("VIP multiplier must be 100–10000 %")
        }
        for campaign in campaigns {
            guard campaign.firstDay <= campaign.lastDay else { throw .invalid("a campaign ends before it starts") }
            guard campaign.multiplierPercent >= 100, campaign.multiplierPercent <= 10_000,
                campaign.bonusPoints <= 1_000_000
            else { throw .invalid("campaign multiplier must be 100–10000 % and its bonus at most 1,000,000 points") }
        }
        for (name, rules) in [("default", defaultPartner)] + partners.sorted(by: { $0.key < $1.key }) {
            guard rules.minorUnitsPerPoint > 0 else {
                throw .invalid("partner \(name): a point must be worth something")
            }
            guard rules.accrualBasisPoints <= 10_000, rules.maxRedeemBasisPoints <= 10_000 else {
                throw .invalid("partner \(name): basis points above 10000")
            }
            guard rules.pendingDays <= 365 else { throw .invalid("partner \(name): pending for more than a year") }
        }
    }

    static let domain = Array("loyalty-edge rules v1".utf8)

    private static func write(_ rules: PartnerRules, _ writer: inout ByteWriter) {
        writer.write(rules.accrualBasisPoints)
        writer.write(rules.minorUnitsPerPoint)
        writer.write(rules.maxRedeemBasisPoints)
        writer.write(rules.pendingDays)
    }

    private static func readPartner(_ reader: inout ByteReader) throws(WireError) -> PartnerRules {
        PartnerRules(
            accrualBasisPoints: try reader.readUInt64(), minorUnitsPerPoint: try reader.readUInt64(),
            maxRedeemBasisPoints: try reader.readUInt64(), pendingDays: try reader.readUInt64())
    }

    /// The canonical bytes that are signed.
    public var encoded: [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writer.write(version)
        writer.write(issuedAtMilliseconds)
        writer.writeBytes(phoneKey)
        Self.write(defaultPartner, &writer)
        writer.write(UInt32(partners.count))
        for (name, rules) in partners.sorted(by: { $0.key < $1.key }) {
            writer.writeString(name)
            Self.write(rules, &writer)
        }
        writer.write(offline.maxPointsPerRedemption)
        writer.write(offline.maxPointsPerMember)
        writer.write(offline.maxRedemptionsPerMember)
        writer.write(offline.maxPointsPerStore)
        writer.write(offline.maxRedemptionsPerStore)
        writer.write(offline.maxOutageMilliseconds)
        writer.write(welcomeBonus)
        writer.write(referralBonus)
        writer.write(UInt32(bitPattern: timeZoneOffsetMinutes))
        writer.write(UInt32(campaigns.count))
        for campaign in campaigns {
            writer.writeString(campaign.partner ?? "")
            writer.write(campaign.firstDay)
            writer.write(campaign.lastDay)
            writer.write(campaign.multiplierPercent)
            writer.write(campaign.bonusPoints)
        }
        writer.write(vipThresholdMinor)
        writer.write(vipMultiplierPercent)
        if placementDays > 0 || feedScope != .all { writer.write(placementDays) }
        if feedScope != .all { feedScope.encode(into: &writer) }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(Failure) {
        var reader = ByteReader(bytes)
        do {
            version = try reader.readUInt64()
            issuedAtMilliseconds = try reader.readUInt64()
            phoneKey = try reader.readBytes(field: "phone key", limit: 64)
            defaultPartner = try Self.readPartner(&reader)
            var partners: [String: PartnerRules] = [:]
            for _ in 0..<(try reader.readCount(field: "partners", limit: 4096)) {
                let name = try reader.readString(field: "partner", limit: 128)
                partners[name] = try Self.readPartner(&reader)
            }
            self.partners = partners
            var policy = OfflinePolicy()
            policy.maxPointsPerRedemption = try reader.readUInt64()
            policy.maxPointsPerMember = try reader.readUInt64()
            policy.maxRedemptionsPerMember = try reader.readUInt64()
            policy.maxPointsPerStore = try reader.readUInt64()
            policy.maxRedemptionsPerStore = try reader.readUInt64()
            policy.maxOutageMilliseconds = try reader.readUInt64()
            offline = policy
            welcomeBonus = try reader.readUInt64()
            referralBonus = try reader.readUInt64()
            timeZoneOffsetMinutes = Int32(bitPattern: try reader.readUInt32())
            var campaigns: [Campaign] = []
            for _ in 0..<(try reader.readCount(field: "campaigns", limit: 1024)) {
                let partner = try reader.readString(field: "campaign partner", limit: 128)
                campaigns.append(
                    Campaign(
                        partner: partner.isEmpty ? nil : partner, firstDay: try reader.readInt64(),
                        lastDay: try reader.readInt64(), multiplierPercent: try reader.readUInt64(),
                        bonusPoints: try reader.readUInt64()))
            }
            self.campaigns = campaigns
            vipThresholdMinor = try reader.readUInt64()
            vipMultiplierPercent = try reader.readUInt64()
            if reader.remaining > 0 { placementDays = try reader.readUInt64() }
            if reader.remaining > 0 { feedScope = try FeedScope.decode(from: &reader) }
            try reader.expectEnd()
        } catch {
            throw .malformed(error.description)
        }
        try validate()
    }

    /// `signature ‖ document`, as the hub stores and sends it.
    public func signed(by hub: SigningKeyPair) -> [UInt8] {
        let body = encoded
        return hub.sign(Self.domain + body) + body
    }

    /// Verifies a signed document against the pinned hub key and decodes it.
    public static func verify(_ signed: [UInt8], hubKey: PublicKey) throws(Failure) -> RulesDocument {
        guard signed.count > 64 else { throw .malformed("too short") }
        let signature = Array(signed[0..<64])
        let body = Array(signed[64...])
        guard hubKey.verify(signature: signature, message: domain + body) else { throw .badSignature }
        return try RulesDocument(decoding: body)
    }
}

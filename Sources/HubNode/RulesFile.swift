import Foundation
import NodeKit
import SyncProtocol
import TOMLKit

/// The operator's rules file (`rules.toml`) that `hub rules publish` signs and distributes.
///
/// ```toml
/// [default]            # economics of partners without a section of their own
/// accrual_bp = 500     # share of the paid amount given back as points (500 = 5 %)
/// max_redeem_bp = 3000 # largest share of a check payable with points
/// minor_units_per_point = 100
/// pending_days = 0     # days points stay unredeemable while the purchase can be returned
/// [partners.fuel]
/// accrual_bp = 100
/// [offline]            # the offline risk policy stores apply (all zero: none)
/// max_points_per_redemption = 0
/// [bonuses]            # points for joining, and to each side of a referral
/// welcome = 1000
/// referral = 3000
/// [placement]          # stores keep the rights of members who last shopped there
/// days = 30            # within this many days (0: every store hands rights to the hub)
/// [feed]               # which members' changes each store receives
/// scope = "partner-group"   # or "all" (the default): every member at every store
/// [feed.groups]        # partners whose stores share their members; any other partner
/// north = ["grocer", "fuel"]  # is a group of its own
/// ```
public struct RulesFile: Decodable, Sendable {
    public struct Partner: Decodable, Sendable {
        public var accrualBp: UInt64?
        public var maxRedeemBp: UInt64?
        public var minorUnitsPerPoint: UInt64?
        public var pendingDays: UInt64?

        enum CodingKeys: String, CodingKey {
            case pendingDays = "pending_days"
            case accrualBp = "accrual_bp"
            case maxRedeemBp = "max_redeem_bp"
            case minorUnitsPerPoint = "minor_units_per_point"
        }

        func rules(over base: PartnerRules) -> PartnerRules {
            PartnerRules(
                accrualBasisPoints: accrualBp ?? base.accrualBasisPoints,
                minorUnitsPerPoint: minorUnitsPerPoint ?? base.minorUnitsPerPoint,
                maxRedeemBasisPoints: maxRedeemBp ?? base.maxRedeemBasisPoints,
                pendingDays: pendingDays ?? base.pendingDays)
        }
    }

    public var `default`: Partner?
    public var partners: [String: Partner]?
    public var offline: OfflinePolicySection?
    public var bonuses: Bonuses?
    public var tiers: Tiers?
    public var placement: Placement?
    public var feed: Feed?

    /// `[feed]`: `scope` is "all" (every store holds every member) or "partner-group" (a
    /// store holds the members its partner group serves and fetches others from the hub);
    /// `[feed.groups]` names groups of partners.
    public struct Feed: Decodable, Sendable {
        public var scope: String?
        public var groups: [String: [String]]?

        func feedScope() throws -> FeedScope {
            switch scope ?? "all" {
            case "all": return FeedScope(byPartnerGroup: false, groups: groups ?? [:])
            case "partner-group": return FeedScope(byPartnerGroup: true, groups: groups ?? [:])
            case let other: throw HubError("[feed] scope must be \"all\" or \"partner-group\" (got \"\(other)\")")
            }
        }
    }

    /// `[placement]`: `days` a store keeps the redemption rights of members whose latest
    /// purchase was there (and the hub places its own rights for them there); 0 turns it off.
    public struct Placement: Decodable, Sendable {
        public var days: UInt64?
    }

    /// `[tiers]`: net monthly spend (minor units) that makes a member VIP for the next month,
    /// and the VIP accrual multiplier in percent.
    public struct Tiers: Decodable, Sendable {
        public var vipThreshold: UInt64?
        public var vipMultiplierPercent: UInt64?

        enum CodingKeys: String, CodingKey {
            case vipThreshold = "vip_threshold"
            case vipMultiplierPercent = "vip_multiplier_percent"
        }
    }
    /// Minutes east of UTC of the programme's time zone (campaign dates are local days).
    public var timeZoneOffsetMinutes: Int32?
    public var campaigns: [CampaignEntry]?

    /// `[[campaigns]]`: `from`/`to` dates (YYYY-MM-DD, inclusive), optional `partner`,
    /// `multiplier_percent` (200 doubles) and/or `bonus_points` per purchase.
    public struct CampaignEntry: Decodable, Sendable {
        public var partner: String?
        public var from: String
        public var to: String
        public var multiplierPercent: UInt64?
        public var bonusPoints: UInt64?

        enum CodingKeys: String, CodingKey {
            case partner, from, to
            case multiplierPercent = "multiplier_percent"
            case bonusPoints = "bonus_points"
        }
    }

    enum CodingKeys: String, CodingKey {
        case `default`, partners, offline, bonuses, campaigns, tiers, placement, feed
        case timeZoneOffsetMinutes = "time_zone_offset_minutes"
    }

    /// The campaigns, with their dates checked.
    func parsedCampaigns() throws -> [Campaign] {
        try (campaigns ?? []).map { entry in
            guard let first = Campaign.day(parsing: entry.from), let last = Campaign.day(parsing: entry.to) else {
                throw HubError("campaign dates must be YYYY-MM-DD (got \(entry.from) … \(entry.to))")
            }
            return Campaign(
                partner: entry.partner, firstDay: first, lastDay: last,
                multiplierPercent: entry.multiplierPercent ?? 100,
                bonusPoints: entry.bonusPoints ?? 0)
        }
    }

    /// `[bonuses]`: `welcome` points for joining, `referral` points to each side of a referral.
    public struct Bonuses: Decodable, Sendable {
        public var welcome: UInt64?
        public var referral: UInt64?
    }

    public static func parse(_ text: String) throws -> RulesFile {
        do { return try TOMLDecoder().decode(RulesFile.self, from: text) } catch let error as TOMLParseError {
            throw HubError("rules file line \(error.source.begin.line): \(error.description)")
        } catch {
            throw HubError("rules file: \(error)")
        }
    }

    /// The document these rules describe (version, time and phone key are set on publishing).
    public func document(version: UInt64, issuedAt: UInt64, phoneKey: [UInt8]) throws -> RulesDocument {
        let base = (self.default ?? Partner()).rules(over: PartnerRules())
        let policy = offline?.policy() ?? OfflinePolicy()
        var document = RulesDocument(
            version: version, issuedAtMilliseconds: issuedAt, phoneKey: phoneKey, defaultPartner: base,
            partners: (partners ?? [:]).mapValues { $0.rules(over: base) }, offline: policy,
            welcomeBonus: bonuses?.welcome ?? 0, referralBonus: bonuses?.referral ?? 0,
            timeZoneOffsetMinutes: timeZoneOffsetMinutes ?? 0, campaigns: try parsedCampaigns(),
            vipThresholdMinor: tiers?.vipThreshold ?? 0, vipMultiplierPercent: tiers?.vipMultiplierPercent ?? 100)
        document.placementDays = placement?.days ?? 0
        document.feedScope = try feed?.feedScope() ?? .all
        return document
    }
}

extension HubLedger {
    /// Signs and stores the next version of the rules. The phone key is made once, at the
    /// first publication, and carried into every later version.
    public func publishRules(_ db: any SQLDatabase, _ file: RulesFile, hub: SigningKeyPair) throws -> RulesDocument {
        try db.transaction {
            var phoneKey: [UInt8]
            var version: UInt64 = 1
            var scoped = false
            if let latest = try latestRules(db, newerThan: 0) {
                let previous = try RulesDocument.verify(latest.document, hubKey: hub.publicKey)
                phoneKey = previous.phoneKey
                version = latest.version + 1
                scoped = previous.feedScope.byPartnerGroup
            } else {
                phoneKey = Sodium.randomBytes(32)
            }
            defer { Sodium.zero(&phoneKey) }
            let document = try file.document(version: version, issuedAt: wallClockMilliseconds(), phoneKey: phoneKey)
            do throws(RulesDocument.Failure) { try document.validate() } catch { throw HubError(error.description) }
            try db.run(
                "INSERT INTO rules(version, document, published_ms) VALUES(?, ?, ?)",
                [.uint(version), .blob(document.signed(by: hub)), .uint(document.issuedAtMilliseconds)])
            // Partner-group feeds start from what every store holds now: the whole feed.
            if document.feedScope.byPartnerGroup && !scoped { try startScoping(db) }
            if !document.feedScope.byPartnerGroup && scoped { try stopScoping(db) }
            return document
        }
    }
}

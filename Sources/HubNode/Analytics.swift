import NodeKit
import SyncProtocol

/// RFM segments as coalition programmes report them.
public enum Segment: String, CaseIterable, Sendable {
    case core = "Core", loyal = "Loyal", whales = "Whales", newcomers = "Newcomers", sleepers = "Sleepers", lost =
        "Lost"
}

/// Thresholds of the RFM split. Defaults: a member is a Newcomer for 30 days after joining;
/// Lost after 180 days without a purchase, a Sleeper after 60; among the recent ones, Core
/// buy at least 4 times and spend at least 20,000.00 in the last 90 days, Whales spend that
/// much in fewer purchases, and everyone else recent is Loyal.
public struct RFMThresholds: Sendable, Equatable {
    public var newcomerDays: Int64 = 30
    public var sleeperDays: Int64 = 60
    public var lostDays: Int64 = 180
    public var windowDays: Int64 = 90
    public var frequentPurchases: Int = 4
    public var largeSpendMinor: UInt64 = 2_000_000

    public init() {}

    /// The segment of a member as of `today` (days since 1970).
    public func segment(joinedDay: Int64, purchaseDays: [Int64], windowSpend: UInt64, today: Int64) -> Segment {
        if today - joinedDay <= newcomerDays { return .newcomers }
        guard let last = purchaseDays.max() else { return .lost }
        let recency = today - last
        if recency > lostDays { return .lost }
        if recency > sleeperDays { return .sleepers }
        let frequency = purchaseDays.filter { today - $0 < windowDays }.count
        let large = windowSpend >= largeSpendMinor
        if frequency >= frequentPurchases { return large ? .core : .loyal }
        return large ? .whales : .loyal
    }
}

/// A partner's figures for a period.
public struct PartnerFigures: Sendable, Equatable {
    public var partner: String
    public var participants: Int
    public var purchases: Int
    public var spendMinor: UInt64
    /// Of the members who bought at this partner in the previous period of the same
    /// length, the share (per mille) who bought again in this one.
    public var retentionPerMille: Int

    public var frequencyPerMille: Int { participants == 0 ? 0 : purchases * 1000 / participants }
    public var averageCheckMinor: UInt64 { purchases == 0 ? 0 : spendMinor / UInt64(purchases) }
}

extension HubLedger {
    /// Every purchase the hub holds: member, store, amount and (programme-local) day.
    func purchases(_ db: any SQLDatabase, offsetMinutes: Int32) throws -> [(
        member: MemberID, store: NodeID, amount: UInt64, day: Int64
    )] {
        let days = RulesDocument(
            version: 0, issuedAtMilliseconds: 0, phoneKey: [], timeZoneOffsetMinutes: offsetMinutes)
        var result: [(MemberID, NodeID, UInt64, Int64)] = []
        for row in try db.query("SELECT entry FROM entries WHERE origin != 0 ORDER BY hlc") {
            let entry = try LogEntry(decoding: row.blob(0))
            if case .purchase(let purchase) = entry.operation {
                result.append(
                    (purchase.member, entry.origin, purchase.amountMinor, days.day(of: entry.timestamp.milliseconds)))
            }
        }
        return result
    }

    /// How many members fall in each RFM segment as of `today`.
    public func rfm(_ db: any SQLDatabase, today: Int64, thresholds: RFMThresholds = RFMThresholds()) throws
        -> [Segment: Int]
    {
        let offset = try timeZoneOffsetMinutes(db)
        let days = RulesDocument(version: 0, issuedAtMilliseconds: 0, phoneKey: [], timeZoneOffsetMinutes: offset)
        var joined: [MemberID: Int64] = [:]
        for row in try db.query("SELECT id, registered_hlc FROM members") {
            joined[MemberID(rawValue: row.uint(0))] = days.day(of: HLCTimestamp(rawValue: row.uint(1)).milliseconds)
        }
        var purchaseDays: [MemberID: [Int64]] = [:]
        var windowSpend: [MemberID: UInt64] = [:]
        for purchase in try purchases(db, offsetMinutes: offset) where purchase.day <= today {
            purchaseDays[purchase.member, default: []].append(purchase.day)
            if today - purchase.day < thresholds.windowDays {
                windowSpend[purchase.member, default: 0] += purchase.amount
            }
        }
        var counts: [Segment: Int] = [:]
        for (member, joinedDay) in joined where joinedDay <= today {
            let segment = thresholds.segment(
                joinedDay: joinedDay, purchaseDays: purchaseDays[member] ?? [], windowSpend: windowSpend[member] ?? 0,
                today: today)
            counts[segment, default: 0] += 1
        }
        return counts
    }

    /// Participants, purchases, spend and retention per partner for days `first...last`.
    public func partnerFigures(_ db: any SQLDatabase, first: Int64, last: Int64) throws -> [PartnerFigures] {
        var partnerOf: [NodeID: String] = [:]
        for store in try stores(db) { partnerOf[store.id] = store.partner }
        let length = last - first + 1
        var current: [String: (members: Set<MemberID>, purchases: Int, spend: UInt64)] = [:]
        var previous: [String: Set<MemberID>] = [:]
        for purchase in try purchases(db, offsetMinutes: try timeZoneOffsetMinutes(db)) {
            let partner = partnerOf[purchase.store] ?? "store-\(purchase.store.rawValue)"
            if (first...last).contains(purchase.day) {
                var figures = current[partner] ?? ([], 0, 0)
                figures.members.insert(purchase.member)
                figures.purchases += 1
                figures.spend += purchase.amount
                current[partner] = figures
            } else if ((first - length)..<first).contains(purchase.day) {
                previous[partner, default: []].insert(purchase.member)
            }
        }
        return current.keys.sorted().map { partner in
            let figures = current[partner]!
            let before = previous[partner] ?? []
            let retained = before.isEmpty ? 0 : before.intersection(figures.members).count * 1000 / before.count
            return PartnerFigures(
                partner: partner, participants: figures.members.count, purchases: figures.purchases,
                spendMinor: figures.spend, retentionPerMille: retained)
        }
    }
}

/// A campaign: for a date range (inclusive, in the programme's time zone), purchases at one
/// partner (or all) earn with a multiplier and/or a fixed bonus per purchase.
public struct Campaign: Sendable, Equatable {
    /// nil: every partner.
    public var partner: String?
    /// Days since 1970-01-01 in the programme's time zone, both inclusive.
    public var firstDay: Int64
    public var lastDay: Int64
    /// 200 doubles the points; 100 leaves them.
    public var multiplierPercent: UInt64
    public var bonusPoints: UInt64

    public init(
        partner: String?, firstDay: Int64, lastDay: Int64, multiplierPercent: UInt64 = 100, bonusPoints: UInt64 = 0
    ) {
        self.partner = partner
        self.firstDay = firstDay
        self.lastDay = lastDay
        self.multiplierPercent = multiplierPercent
        self.bonusPoints = bonusPoints
    }

    func applies(partner name: String?, day: Int64) -> Bool {
        (partner == nil || partner == name) && day >= firstDay && day <= lastDay
    }
}

extension Campaign {
    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    public static func day(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// Parses `YYYY-MM-DD`.
    public static func day(parsing text: String) -> Int64? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let year = Int64(parts[0]), let month = Int64(parts[1]), let dayOfMonth = Int64(parts[2]),
            (1...12).contains(month), (1...31).contains(dayOfMonth)
        else { return nil }
        return day(year: year, month: month, day: dayOfMonth)
    }
}

extension RulesDocument {
    /// The programme's calendar day of a Unix time.
    public func day(of milliseconds: UInt64) -> Int64 {
        let local = Int64(clamping: milliseconds) + Int64(timeZoneOffsetMinutes) * 60_000
        return local >= 0 ? local / 86_400_000 : (local - 86_399_999) / 86_400_000
    }

    /// The programme's calendar month of a Unix time, as months since January 1970.
    public func month(of milliseconds: UInt64) -> UInt32 {
        RulesDocument.month(ofDay: day(of: milliseconds))
    }

    /// Months since January 1970 of a day count (Howard Hinnant's civil_from_days).
    public static func month(ofDay days: Int64) -> UInt32 {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shifted = (5 * dayOfYear + 2) / 153
        let month = shifted < 10 ? shifted + 3 : shifted - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return UInt32(clamping: max(0, (year - 1970) * 12 + month - 1))
    }

    /// Whether a member with `spend` (minor units) last month is VIP this month.
    public func isVIP(lastMonthSpend spend: UInt64) -> Bool {
        vipThresholdMinor > 0 && spend >= vipThresholdMinor
    }

    /// Points a purchase earns at `partner` at time `at`: the partner's accrual on what was
    /// paid, times the VIP multiplier for VIP members and the largest multiplier of the
    /// campaigns running that day, plus every running campaign's fixed bonus. Integer
    /// arithmetic, rounding down once at the end.
    public func pointsEarned(partner name: String?, paidMinor: UInt64, at milliseconds: UInt64, vip: Bool = false)
        -> UInt64
    {
        let rules = partner(name)
        let today = day(of: milliseconds)
        let running = campaigns.filter { $0.applies(partner: name, day: today) }
        let campaign = running.map(\.multiplierPercent).max() ?? 100
        let tier = vip ? vipMultiplierPercent : 100
        let base = mulDiv(
            paidMinor, rules.accrualBasisPoints * campaign * tier, 10_000 * 100 * 100 * rules.minorUnitsPerPoint)
        let (total, overflow) = running.reduce(base) { $0 &+ $1.bonusPoints }.addingReportingOverflow(0)
        return overflow ? .max : total
    }
}

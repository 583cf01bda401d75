import Foundation
import NodeKit
import SyncProtocol

/// A report as JSON and as CSV.
public struct OperatorReport: Sendable {
    public var json: JSONValue
    public var csv: String
}

/// The questions the operator console answers. The hub's CLI and its HTTP API both call
/// these, so they answer alike. `scope` limits an answer to one partner (its stores, members'
/// activity at them, its own figures); nil is the coalition operator's whole view.
public struct OperatorQueries: Sendable {
    let ledger = HubLedger()
    /// The hub's public key: phone numbers hashed before the first rules use a key derived from it.
    let hubKey: PublicKey?

    public init(hubKey: PublicKey? = nil) { self.hubKey = hubKey }

    static func csvField(_ text: String) -> String {
        text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
            ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    // MARK: Stores

    public func stores(_ db: any SQLDatabase, live: [NodeID: HubStatus.Store] = [:], scope: String?, now: UInt64)
        throws -> JSONValue
    {
        var rows: [JSONValue] = []
        for store in try ledger.stores(db) where scope == nil || store.partner == scope {
            rows.append(try storeJSON(db, store, live: live[store.id], now: now))
        }
        return .object(["stores": .array(rows)])
    }

    func storeJSON(_ db: any SQLDatabase, _ store: StoreRecord, live: HubStatus.Store?, now: UInt64) throws
        -> JSONValue
    {
        func optional(_ value: UInt64?) -> JSONValue { value.map { .int(Int64(clamping: $0)) } ?? .null }
        var edge = JSONValue.null
        if let counters = live?.telemetry {
            edge = .object([
                "unsyncedOperations": .int(Int64(clamping: counters.unsyncedOperations)),
                "writerQueueDepth": .int(Int64(clamping: counters.writerQueueDepth)),
                "offlineMs": .int(Int64(clamping: counters.offlineMilliseconds)),
                "redemptionsRefused": .int(Int64(clamping: counters.redemptionsRefused)),
                "uncoveredPoints": .int(Int64(clamping: counters.uncoveredPoints)),
                "uptimeMs": .int(Int64(clamping: counters.uptimeMilliseconds)),
                "reportedAt": optional(live?.telemetryAt),
            ])
        }
        return .object([
            "id": .int(Int64(store.id.rawValue)), "name": .string(store.name), "partner": .string(store.partner),
            "revoked": .bool(store.revoked), "online": .bool(live?.online ?? false),
            "lastSeen": optional(live?.lastSeen),
            "syncLagMs": optional(live?.lastSeen.map { now > $0 ? now - $0 : 0 }),
            "connectedSince": optional(live?.connectedSince),
            "hubHasUpTo": .int(Int64(clamping: try ledger.originHighWater(db, origin: store.id))),
            "mergedEntries": .int(Int64(clamping: live?.mergedEntries ?? 0)),
            "mergeLagMs": optional(live?.mergeLagMilliseconds),
            "rightsGrants": .int(Int64(clamping: live?.rightsGrants ?? 0)), "edge": edge,
        ])
    }

    /// One store, or nil when no store has this id; `outOfScope` when it is another partner's.
    public func store(
        _ db: any SQLDatabase, id: UInt32, live: HubStatus.Store?, scope: String?, now: UInt64
    ) throws -> (json: JSONValue?, outOfScope: Bool) {
        guard let store = try ledger.stores(db).first(where: { $0.id.rawValue == id }) else { return (nil, false) }
        if let scope, store.partner != scope { return (nil, true) }
        return (try storeJSON(db, store, live: live, now: now), false)
    }

    // MARK: Members

    /// Phone hashes under the current rules' key and the provisional one.
    func phoneHashes(_ db: any SQLDatabase, phone: String) throws -> [[UInt8]] {
        guard let number = PhoneNumber(phone) else { throw HubError(PhoneNumber.formHint) }
        var keys: [SecretBytes] = []
        if var key = try ledger.currentRules(db)?.phoneKey { keys.append(SecretBytes(consuming: &key)) }
        if let hubKey { keys.append(PhoneNumber.provisionalKey(hub: hubKey)) }
        return keys.map { number.hash(key: $0) }
    }

    /// A member by card or phone, with balances, tier and history (nil: not at the hub).
    public func member(_ db: any SQLDatabase, card: String?, phone: String?, scope: String?, now: UInt64) throws
        -> JSONValue?
    {
        var found: SQLRow?
        if let card {
            let number: CardNumber
            do { number = try CardNumber(card) } catch { throw HubError("invalid card number: \(error)") }
            found = try db.query(
                "SELECT id, card, registered_hlc FROM members WHERE card = ? ORDER BY id LIMIT 1",
                [.text(number.digits)]
            ).first
        } else if let phone {
            for hash in try phoneHashes(db, phone: phone) {
                found = try db.query(
                    "SELECT id, card, registered_hlc FROM members WHERE phone_hash = ? ORDER BY id LIMIT 1",
                    [.blob(hash)]
                ).first
                if found != nil { break }
            }
        } else {
            throw HubError("give a card or a phone")
        }
        guard let row = found else { return nil }
        // A record merged into another of the same person answers as the survivor.
        let id = try ledger.survivor(db, of: MemberID(rawValue: row.uint(0)))
        let ids =
            [id]
            + (try db.query("SELECT id FROM members WHERE merged_into = ? ORDER BY id", [.uint(id.rawValue)]).map {
                MemberID(rawValue: $0.uint(0))
            })
        let main = try ledger.counter(db, member: id, account: .main)
        let promo = try ledger.counter(db, member: id, account: .promo)
        var tier = "standard"
        let document = try ledger.currentRules(db)
        let month = document?.month(of: now) ?? RulesDocument.month(ofDay: Int64(now / 86_400_000))
        let monthSpend = main.monthlySpend(month: month)
        if let document, month > 0, document.isVIP(lastMonthSpend: main.monthlySpend(month: month - 1)) {
            tier = "vip"
        }
        let stores = Dictionary(uniqueKeysWithValues: try ledger.stores(db).map { ($0.id, $0) })
        var history: [JSONValue] = []
        var entries: [LogEntry] = []
        for member in ids {
            for entryRow in try db.query(
                "SELECT entry FROM entries WHERE member = ? ORDER BY hlc DESC LIMIT 200", [.uint(member.rawValue)])
            {
                entries.append(try LogEntry(decoding: entryRow.blob(0)))
            }
        }
        for entry in entries.sorted(by: { $0.timestamp > $1.timestamp }) {
            let store = stores[entry.origin]
            if let scope, store?.partner != scope { continue }
            history.append(Self.activity(entry, store: store))
            if history.count == 50 { break }
        }
        return .object([
            "member": .string(id.description), "cards": .array([.string(row.text(1))]),
            "registeredAt": .int(Int64(clamping: HLCTimestamp(rawValue: row.uint(2)).milliseconds)),
            "balance": .int(main.balance), "promoBalance": .int(promo.balance),
            "hubRights": .int(main.rights(.hub)), "tier": .string(tier),
            "monthSpend": .int(Int64(clamping: monthSpend)), "history": .array(history),
        ])
    }

    /// One log entry as an activity line.
    static func activity(_ entry: LogEntry, store: StoreRecord?) -> JSONValue {
        var fields: [String: JSONValue] = [
            "at": .int(Int64(clamping: entry.timestamp.milliseconds)),
            "store": .string(store?.name ?? (entry.origin == .hub ? "hub" : "\(entry.origin)")),
            "partner": .string(store?.partner ?? "coalition"),
            "member": entry.operation.member.map { .string($0.description) } ?? .null,
        ]
        switch entry.operation {
        case .registerMember:
            fields["type"] = .string("registration")
        case .purchase(let purchase):
            fields["type"] = .string("purchase")
            fields["receipt"] = .string(purchase.key)
            fields["amount"] = .int(Int64(clamping: purchase.amountMinor))
            fields["pointsEarned"] = .int(Int64(clamping: purchase.pointsEarned))
            fields["pointsRedeemed"] = .int(Int64(clamping: purchase.pointsRedeemed + purchase.promoRedeemed))
        case .refund(let refund):
            fields["type"] = .string("refund")
            fields["receipt"] = .string(refund.originalKey)
            fields["amount"] = .int(Int64(clamping: refund.amountMinor))
            fields["pointsEarned"] = .int(-Int64(clamping: refund.pointsReversed))
            fields["pointsRedeemed"] = .int(-Int64(clamping: refund.pointsReturned + refund.promoReturned))
        case .promoCredit(_, _, let points):
            fields["type"] = .string("promo")
            fields["pointsEarned"] = .int(Int64(clamping: points))
        case .expiry(_, let points, _):
            fields["type"] = .string("expiry")
            fields["pointsRedeemed"] = .int(Int64(clamping: points))
        case .rightsMove(_, _, let to, let points):
            fields["type"] = .string("rights")
            fields["to"] = .string(to == .hub ? "hub" : "\(to)")
            fields["points"] = .int(Int64(clamping: points))
        case .memberMerge(let merge):
            fields["type"] = .string("merge")
            fields["to"] = .string(merge.survivor.description)
            fields["points"] = .int(Int64(clamping: merge.points))
            fields["pointsRedeemed"] = .int(Int64(clamping: merge.reversed))
        }
        return .object(fields)
    }

    /// The newest purchases, refunds and registrations the hub merged, newest first.
    public func transactions(_ db: any SQLDatabase, limit: Int, scope: String?) throws -> JSONValue {
        let stores = Dictionary(uniqueKeysWithValues: try ledger.stores(db).map { ($0.id, $0) })
        var rows: [JSONValue] = []
        var before = UInt64(Int64.max)
        scan: while rows.count < limit {
            let page = try db.query(
                "SELECT feed_seq, entry FROM entries WHERE feed_seq < ? AND origin != 0 ORDER BY feed_seq DESC LIMIT 500",
                [.uint(before)])
            guard let last = page.last else { break }
            before = last.uint(0)
            for row in page {
                let entry = try LogEntry(decoding: row.blob(1))
                let store = stores[entry.origin]
                if let scope, store?.partner != scope { continue }
                switch entry.operation {
                case .purchase, .refund, .registerMember: rows.append(Self.activity(entry, store: store))
                default: continue
                }
                if rows.count == limit { break scan }
            }
        }
        return .object(["transactions": .array(rows)])
    }

    // MARK: Rules

    public func rules(_ db: any SQLDatabase) throws -> JSONValue {
        let versions = try db.query("SELECT version, published_ms FROM rules ORDER BY version DESC").map {
            JSONValue.object(["version": .int($0.int(0)), "publishedAt": .int($0.int(1))])
        }
        guard let latest = try ledger.latestRules(db, newerThan: 0) else {
            return .object(["current": .null, "versions": .array([])])
        }
        let document = try RulesDocument(decoding: Array(latest.document.dropFirst(64)))
        func partner(_ rules: PartnerRules) -> JSONValue {
            .object([
                "accrualBasisPoints": .int(Int64(rules.accrualBasisPoints)),
                "maxRedeemBasisPoints": .int(Int64(rules.maxRedeemBasisPoints)),
                "minorUnitsPerPoint": .int(Int64(rules.minorUnitsPerPoint)),
                "pendingDays": .int(Int64(clamping: rules.pendingDays)),
            ])
        }
        return .object([
            "current": .object([
                "version": .int(Int64(clamping: document.version)),
                "issuedAt": .int(Int64(clamping: document.issuedAtMilliseconds)),
                "default": partner(document.defaultPartner),
                "partners": .object(document.partners.mapValues(partner)),
                "welcomeBonus": .int(Int64(clamping: document.welcomeBonus)),
                "referralBonus": .int(Int64(clamping: document.referralBonus)),
                "vipThresholdMinor": .int(Int64(clamping: document.vipThresholdMinor)),
                "vipMultiplierPercent": .int(Int64(clamping: document.vipMultiplierPercent)),
                "timeZoneOffsetMinutes": .int(Int64(document.timeZoneOffsetMinutes)),
                "campaigns": .int(Int64(document.campaigns.count)),
                "offlineMaxPointsPerRedemption": .int(Int64(clamping: document.offline.maxPointsPerRedemption)),
                "placementDays": .int(Int64(clamping: document.placementDays)),
                "feedScope": .string(document.feedScope.byPartnerGroup ? "partner-group" : "all"),
                "partnerGroups": .object(document.feedScope.groups.mapValues { .array($0.map { .string($0) }) }),
            ]),
            "versions": .array(versions),
        ])
    }

    // MARK: Reports

    public func rfm(_ db: any SQLDatabase, asOf today: Int64, thresholds: RFMThresholds = RFMThresholds()) throws
        -> OperatorReport
    {
        let counts = try ledger.rfm(db, today: today, thresholds: thresholds)
        let total = max(1, counts.values.reduce(0, +))
        var csv = "segment,members,share_per_mille\n"
        var rows: [JSONValue] = []
        for segment in Segment.allCases {
            let members = counts[segment] ?? 0
            csv += "\(segment.rawValue),\(members),\(members * 1000 / total)\n"
            rows.append(
                .object([
                    "segment": .string(segment.rawValue), "members": .int(Int64(members)),
                    "sharePerMille": .int(Int64(members * 1000 / total)),
                ]))
        }
        return OperatorReport(
            json: .object(["asOfDay": .int(today), "segments": .array(rows)]), csv: csv)
    }

    public func partners(_ db: any SQLDatabase, first: Int64, last: Int64, scope: String?) throws -> OperatorReport {
        var csv = "partner,participants,purchases,frequency_per_mille,average_check,retention_per_mille\n"
        var rows: [JSONValue] = []
        for row in try ledger.partnerFigures(db, first: first, last: last) where scope == nil || row.partner == scope {
            csv +=
                [
                    Self.csvField(row.partner), "\(row.participants)", "\(row.purchases)", "\(row.frequencyPerMille)",
                    "\(row.averageCheckMinor)", "\(row.retentionPerMille)",
                ].joined(separator: ",") + "\n"
            rows.append(
                .object([
                    "partner": .string(row.partner), "participants": .int(Int64(row.participants)),
                    "purchases": .int(Int64(row.purchases)),
                    "frequencyPerMille": .int(Int64(row.frequencyPerMille)),
                    "averageCheck": .int(Int64(clamping: row.averageCheckMinor)),
                    "retentionPerMille": .int(Int64(row.retentionPerMille)),
                ]))
        }
        return OperatorReport(
            json: .object(["fromDay": .int(first), "toDay": .int(last), "partners": .array(rows)]), csv: csv)
    }

    /// Days (programme time zone) to the Unix-millisecond period they cover.
    public func period(_ db: any SQLDatabase, first: Int64, last: Int64) throws -> ClosedRange<UInt64> {
        let offset = Int64(try ledger.timeZoneOffsetMinutes(db)) * 60_000
        let start = UInt64(max(0, first * 86_400_000 - offset))
        let end = UInt64(max(0, (last + 1) * 86_400_000 - offset - 1))
        return start...max(start, end)
    }

    public func clearing(_ db: any SQLDatabase, first: Int64, last: Int64, scope: String?) throws -> OperatorReport {
        var report = try ledger.clearing(db, period: try period(db, first: first, last: last))
        if let scope { report = report.limited(to: scope) }
        var json = report.json
        if case .object(var fields) = json {
            fields["fromDay"] = .int(first)
            fields["toDay"] = .int(last)
            json = .object(fields)
        }
        return OperatorReport(json: json, csv: report.csv)
    }

    /// Points issued and not yet spent or expired, per partner, over the whole log.
    public func liability(_ db: any SQLDatabase, scope: String?) throws -> OperatorReport {
        var report = try ledger.clearing(db, period: 0...UInt64(Int64.max))
        if let scope { report = report.limited(to: scope) }
        var csv = "partner,points\n"
        var rows: [JSONValue] = []
        for (partner, points) in report.liability.sorted(by: { $0.key < $1.key }) {
            csv += "\(Self.csvField(partner)),\(points)\n"
            rows.append(.object(["partner": .string(partner), "points": .int(Int64(clamping: points))]))
        }
        return OperatorReport(json: .object(["partners": .array(rows)]), csv: csv)
    }

    public func exposure(_ db: any SQLDatabase, scope: String?) throws -> OperatorReport {
        let partnerOf = Dictionary(uniqueKeysWithValues: try ledger.stores(db).map { ($0.name, $0.partner) })
        var csv = "store,redemptions,points,members,members_now_in_debt\n"
        var rows: [JSONValue] = []
        for row in try ledger.exposure(db) where scope == nil || partnerOf[row.store] == scope {
            csv +=
                "\(Self.csvField(row.store)),\(row.redemptions),\(row.points),\(row.members),\(row.membersNowInDebt)\n"
            rows.append(
                .object([
                    "store": .string(row.store), "redemptions": .int(Int64(row.redemptions)),
                    "points": .int(Int64(clamping: row.points)), "members": .int(Int64(row.members)),
                    "membersNowInDebt": .int(Int64(row.membersNowInDebt)),
                ]))
        }
        return OperatorReport(json: .object(["stores": .array(rows)]), csv: csv)
    }
}

extension ClearingReport {
    /// The part of the report one partner may see: its own pairs, balance and liability.
    public func limited(to partner: String) -> ClearingReport {
        var limited = ClearingReport()
        for (earnedAt, spends) in gross {
            for (spentAt, points) in spends where earnedAt == partner || spentAt == partner {
                limited.gross[earnedAt, default: [:]][spentAt] = points
            }
        }
        if let own = liability[partner] { limited.liability[partner] = own }
        return limited
    }
}

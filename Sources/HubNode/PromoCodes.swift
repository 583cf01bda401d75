import NodeKit
import SyncProtocol

extension HubLedger {
    static let promoMigration = Migrator.Step(
        version: 2,
        sql: """
            -- Promo codes: single-use across the coalition, credited only by the hub.
            CREATE TABLE promo_codes (
                code TEXT PRIMARY KEY,
                points INTEGER NOT NULL,
                created_ms INTEGER NOT NULL,
                used_by INTEGER,
                used_store INTEGER,
                used_ms INTEGER
            ) WITHOUT ROWID;
            """)

    /// Codes are 10 characters of Crockford base-32 (no I, L, O, U): about 50 bits each.
    static let codeAlphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

    /// Creates `count` fresh codes worth `points` each and returns them.
    public func createPromoCodes(_ db: any SQLDatabase, points: UInt64, count: Int) throws -> [String] {
        guard points > 0, points <= 1_000_000 else { throw HubError("a promo code is worth 1 to 1,000,000 points") }
        guard count > 0, count <= 100_000 else { throw HubError("create 1 to 100,000 codes at a time") }
        var codes: [String] = []
        while codes.count < count {
            let code = String(Sodium.randomBytes(10).map { Self.codeAlphabet[Int($0) % 32] })
            let inserted = try db.run(
                "INSERT INTO promo_codes(code, points, created_ms) VALUES(?, ?, ?) ON CONFLICT DO NOTHING",
                [.text(code), .uint(points), .uint(wallClockMilliseconds())])
            if inserted == 1 { codes.append(code) }
        }
        return codes
    }

    /// Credits a code to a member's promo account, once: the hub's entry raises its own
    /// `earned[hub]` slot of that account. Returns the points and entry, or why not.
    public func activatePromo(_ db: any SQLDatabase, code raw: String, member: MemberID, store: NodeID) throws -> (
        points: UInt64, entry: LogEntry?, refusal: String?
    ) {
        let code = raw.uppercased().filter { $0 != "-" && $0 != " " }
        guard let row = try db.query("SELECT points, used_by FROM promo_codes WHERE code = ?", [.text(code)]).first
        else { return (0, nil, "unknown promo code \(raw)") }
        guard row.isNull(1) else { return (0, nil, "promo code \(raw) was already used") }
        let points = row.uint(0)
        try db.run(
            "UPDATE promo_codes SET used_by = ?, used_store = ?, used_ms = ? WHERE code = ?",
            [.uint(member.rawValue), .int(Int(store.rawValue)), .uint(now()), .text(code)])
        var counter = try counter(db, member: member, account: .promo)
        let (slot, value) = try counter.earn(at: .hub, points)
        let entry = try appendHubEntry(
            db, operation: .promoCredit(member: member, code: code, points: points),
            effects: [SlotWrite(member: member, account: .promo, slot: slot, value: value)])
        return (points, entry, nil)
    }
}

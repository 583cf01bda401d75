import SyncProtocol

/// The `slots` table both edge and hub keep: one row per escrow-counter slot, raised only
/// with MAX so that applying an entry twice, or out of order, changes nothing.
public enum CounterSlots {
    public static let schema = """
        CREATE TABLE slots (
            member INTEGER NOT NULL,
            account INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            from_node INTEGER NOT NULL,
            to_node INTEGER NOT NULL,
            value INTEGER NOT NULL,
            PRIMARY KEY (member, account, kind, from_node, to_node)
        ) WITHOUT ROWID;
        """

    /// A member's account as an `EscrowCounter`.
    public static func load(_ db: any SQLDatabase, member: MemberID, account: Account) throws -> EscrowCounter {
        var counter = EscrowCounter()
        for row in try db.query(
            "SELECT kind, from_node, to_node, value FROM slots WHERE member = ? AND account = ?",
            [.uint(member.rawValue), .int(Int(account.rawValue))])
        {
            guard let kind = SlotKind(rawValue: UInt8(truncatingIfNeeded: row.int(0))) else { continue }
            let from = NodeID(UInt32(truncatingIfNeeded: row.int(1)))
            let to = NodeID(UInt32(truncatingIfNeeded: row.int(2)))
            counter.apply(SlotKey(kind: kind, from: from, to: to), row.uint(3))
        }
        return counter
    }

    /// Raises each written slot to its value if that is larger. Writes to one slot are
    /// folded first (the largest wins), so each slot is one row of one statement.
    public static func apply(_ db: any SQLDatabase, _ effects: [SlotWrite]) throws {
        var rows: [[SQLValue]] = []
        var index: [SlotRow: Int] = [:]
        for effect in effects {
            let key = SlotRow(
                member: effect.member.rawValue, account: effect.account.rawValue, kind: effect.slot.kind.rawValue,
                from: effect.slot.from.rawValue, to: effect.slot.to.rawValue)
            if let at = index[key] {
                if effect.value > UInt64(bitPattern: rows[at][5].integer) { rows[at][5] = .uint(effect.value) }
                continue
            }
            index[key] = rows.count
            rows.append([
                .uint(key.member), .int(Int(key.account)), .int(Int(key.kind)), .int(Int(key.from)),
                .int(Int(key.to)), .uint(effect.value),
            ])
        }
        try db.insert(
            "INSERT INTO slots(member, account, kind, from_node, to_node, value)", values: "(?, ?, ?, ?, ?, ?)",
            suffix: """
                ON CONFLICT(member, account, kind, from_node, to_node) \
                DO UPDATE SET value = \(db.greatest("slots.value", "excluded.value"))
                """, rows: rows)
    }

    private struct SlotRow: Hashable {
        var member: UInt64
        var account: UInt8
        var kind: UInt8
        var from: UInt32
        var to: UInt32
    }

    /// Rights placement: records a purchase by `member` at `store` at `hlc` in the `visits`
    /// table (edge and hub keep one each) when it is later than the member's latest known.
    public static func recordVisit(_ db: any SQLDatabase, member: MemberID, store: NodeID, hlc: UInt64) throws {
        try db.run(
            """
            INSERT INTO visits(member, store, hlc) VALUES(?, ?, ?)
            ON CONFLICT(member) DO UPDATE SET store = excluded.store, hlc = excluded.hlc
            WHERE excluded.hlc > visits.hlc
            """, [.uint(member.rawValue), .int(Int(store.rawValue)), .uint(hlc)])
    }

    /// Records a registered member (ignored when already known).
    public static func insertMember(_ db: any SQLDatabase, _ record: MemberRecord) throws {
        try insertMembers(db, [record])
    }

    /// Records registered members (each ignored when already known).
    public static func insertMembers(_ db: any SQLDatabase, _ records: [MemberRecord]) throws {
        try db.insert(
            "INSERT INTO members(id, card, phone_hash, referrer, registered_hlc)", values: "(?, ?, ?, ?, ?)",
            suffix: "ON CONFLICT DO NOTHING",
            rows: records.map { record in
                [
                    .uint(record.id.rawValue), .text(record.card),
                    record.phoneHash.isEmpty ? .null : .blob(record.phoneHash),
                    record.referrer.map { .uint($0.rawValue) } ?? .null, .uint(record.registeredAt.rawValue),
                ]
            })
    }
}

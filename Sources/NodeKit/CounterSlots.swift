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
        guard !effects.isEmpty else { return }
        var rows: [(key: SlotRow, value: UInt64)] = []
        rows.reserveCapacity(effects.count)
        // A store's operation writes a slot or two: a linear search folds them. A hub merge
        // or a feed batch writes thousands: a dictionary does.
        var index: [SlotRow: Int]? = effects.count > 8 ? [:] : nil
        for effect in effects {
            let key = SlotRow(
                member: effect.member.rawValue, account: effect.account.rawValue, kind: effect.slot.kind.rawValue,
                from: effect.slot.from.rawValue, to: effect.slot.to.rawValue)
            let at = index != nil ? index![key] : rows.firstIndex { $0.key == key }
            if let at {
                rows[at].value = max(rows[at].value, effect.value)
                continue
            }
            index?[key] = rows.count
            rows.append((key, effect.value))
        }
        func values(_ row: (key: SlotRow, value: UInt64)) -> [SQLValue] {
            [
                .uint(row.key.member), .int(Int(row.key.account)), .int(Int(row.key.kind)), .int(Int(row.key.from)),
                .int(Int(row.key.to)), .uint(row.value),
            ]
        }
        switch db.dialect {
        case .sqlite:
            // One cached statement per row; the text is built once, not for every call.
            for row in rows { try db.run(upsertSQLite, values(row)) }
        case .postgres:
            try db.insert(
                "INSERT INTO slots(member, account, kind, from_node, to_node, value)", values: "(?, ?, ?, ?, ?, ?)",
                suffix: """
                    ON CONFLICT(member, account, kind, from_node, to_node) \
                    DO UPDATE SET value = \(db.greatest("slots.value", "excluded.value"))
                    """, rows: rows.map(values))
        }
    }

    private static let upsertSQLite = """
        INSERT INTO slots(member, account, kind, from_node, to_node, value) VALUES (?, ?, ?, ?, ?, ?) \
        ON CONFLICT(member, account, kind, from_node, to_node) DO UPDATE SET value = MAX(slots.value, excluded.value)
        """

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

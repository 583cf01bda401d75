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
    public static func load(_ db: SQLiteConnection, member: MemberID, account: Account) throws -> EscrowCounter {
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

    /// Raises each written slot to its value if that is larger.
    public static func apply(_ db: SQLiteConnection, _ effects: [SlotWrite]) throws {
        for effect in effects {
            try db.run(
                """
                INSERT INTO slots(member, account, kind, from_node, to_node, value) VALUES(?, ?, ?, ?, ?, ?)
                ON CONFLICT(member, account, kind, from_node, to_node) DO UPDATE SET value = MAX(value, excluded.value)
                """,
                [
                    .uint(effect.member.rawValue), .int(Int(effect.account.rawValue)),
                    .int(Int(effect.slot.kind.rawValue)), .int(Int(effect.slot.from.rawValue)),
                    .int(Int(effect.slot.to.rawValue)), .uint(effect.value),
                ])
        }
    }

    /// Records a registered member (ignored when already known).
    public static func insertMember(_ db: SQLiteConnection, _ record: MemberRecord) throws {
        try db.run(
            "INSERT OR IGNORE INTO members(id, card, phone_hash, referrer, registered_hlc) VALUES(?, ?, ?, ?, ?)",
            [
                .uint(record.id.rawValue), .text(record.card),
                record.phoneHash.isEmpty ? .null : .blob(record.phoneHash),
                record.referrer.map { .uint($0.rawValue) } ?? .null, .uint(record.registeredAt.rawValue),
            ])
    }
}

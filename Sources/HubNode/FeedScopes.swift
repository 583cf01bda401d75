import NodeKit
import SyncProtocol

/// Partner-group feeds. With `[feed] scope = "partner-group"` in the rules, a store receives
/// the entries of the members its partner group serves, not the whole coalition's. The hub
/// keeps, per member, the partners whose stores serve them (`member_scope`): the partner of
/// the store that registered them, and of every store that served them since. `since` is the
/// feed place from which a partner's stores hold the member: a store that passes it with
/// its watermark gets the member's snapshot (registration and counters) in that batch, and
/// the member's entries after it; 0 means from their registration on.
extension HubLedger {
    static func scopeMigration(integer: String, phoneIndex: Bool) -> Migrator.Step {
        .init(
            version: 7,
            sql: """
                CREATE TABLE member_scope (
                    member \(integer) NOT NULL,
                    partner TEXT NOT NULL,
                    since \(integer) NOT NULL,
                    PRIMARY KEY (member, partner)
                );
                CREATE INDEX member_scope_partner ON member_scope(partner, since);
                """ + (phoneIndex ? "\nCREATE INDEX members_phone ON members(phone_hash);" : ""))
    }

    /// Each scoped store's feed, written as entries are merged (fan-out on write): a row per
    /// entry and partner serving its member, so a pull reads its group's rows and nothing
    /// else, however many other groups write meanwhile.
    static func scopeFeedMigration(integer: String) -> Migrator.Step {
        .init(
            version: 8,
            sql: """
                CREATE TABLE scope_feed (
                    partner TEXT NOT NULL,
                    feed_seq \(integer) NOT NULL,
                    PRIMARY KEY (partner, feed_seq)
                );
                """)
    }

    /// A group's newcomers are read in (since, member) order: with `member` in the index, that
    /// order is the index's, and a pull sorts nothing (a sort opened a temporary b-tree at
    /// every pull, empty or not).
    static let scopeOrderMigration = Migrator.Step(
        version: 9,
        sql: """
            DROP INDEX member_scope_partner;
            CREATE INDEX member_scope_partner ON member_scope(partner, since, member);
            """)

    /// The members a one-partner group took on between two feed places, in the order they
    /// joined: read in index order (see `scopeOrderMigration`).
    static let newcomersOfOnePartner = """
        SELECT member, since FROM member_scope
        WHERE partner = ? AND since > ? AND since <= ?
        ORDER BY since, member LIMIT ?
        """

    /// Files the entries at feed places `from...to` under every partner serving their member
    /// (run for every entry the hub takes in; `member_scope` is empty while scoping is off,
    /// so it files nothing then).
    func fanOut(_ db: any SQLDatabase, from: UInt64, to: UInt64) throws {
        guard from <= to else { return }
        try db.run(
            """
            INSERT INTO scope_feed(partner, feed_seq)
            SELECT m.partner, e.feed_seq FROM entries e JOIN member_scope m ON m.member = e.member
            WHERE e.feed_seq >= ? AND e.feed_seq <= ?
            ON CONFLICT DO NOTHING
            """, [.uint(from), .uint(to)])
    }

    /// The feed scope in force.
    func currentScope(_ db: any SQLDatabase) throws -> FeedScope {
        try feedScope ?? currentRules(db)?.feedScope ?? .all
    }

    /// The partner a store belongs to.
    public func partner(_ db: any SQLDatabase, of store: NodeID) throws -> String {
        guard let row = try db.query("SELECT partner FROM stores WHERE id = ?", [.int(Int(store.rawValue))]).first
        else { throw HubError("store \(store.rawValue) is not enrolled") }
        return row.text(0)
    }

    /// When rules first turn partner-group feeds on: every member is held by the partners
    /// whose stores wrote about them (those stores have had the whole feed until now).
    func startScoping(_ db: any SQLDatabase) throws {
        try db.run(
            """
            INSERT INTO member_scope(member, partner, since)
            SELECT DISTINCT e.member, s.partner, 0 FROM entries e JOIN stores s ON s.id = e.origin
            WHERE e.member IS NOT NULL
            ON CONFLICT DO NOTHING
            """, [])
        try fanOut(db, from: 1, to: try nextFeedSequence(db) - 1)
    }

    /// When rules turn partner-group feeds off: stores get the whole feed again, and nothing
    /// is filed per partner until scoping is turned on again (`startScoping` rebuilds it).
    func stopScoping(_ db: any SQLDatabase) throws {
        try db.run("DELETE FROM scope_feed", [])
        try db.run("DELETE FROM member_scope", [])
    }

    /// After a merge from `store` (entries numbered from `firstFeed`): the store's partner
    /// serves every member the push wrote about. A member registered in the push is held
    /// from registration; any other new to the partner from this push on.
    func recordScope(_ db: any SQLDatabase, store: NodeID, entries: [LogEntry], firstFeed: UInt64) throws {
        var since: [MemberID: UInt64] = [:]
        for entry in entries {
            guard let member = entry.operation.member else { continue }
            if case .registerMember = entry.operation {
                since[member] = 0
            } else if since[member] == nil {
                since[member] = firstFeed
            }
        }
        guard !since.isEmpty else { return }
        let partner = try partner(db, of: store)
        try db.insert(
            "INSERT INTO member_scope(member, partner, since)", values: "(?, ?, ?)", suffix: "ON CONFLICT DO NOTHING",
            rows: since.sorted(by: { $0.key < $1.key }).map {
                [.uint($0.key.rawValue), .text(partner), .uint($0.value)]
            })
    }

    /// A member merge: the stores holding either record hold both from `feed` on.
    func unionScope(_ db: any SQLDatabase, _ first: MemberID, _ second: MemberID, from feed: UInt64) throws {
        guard try currentScope(db).byPartnerGroup else { return }
        for (to, from) in [(first, second), (second, first)] {
            try db.run(
                """
                INSERT INTO member_scope(member, partner, since)
                SELECT ?, partner, ? FROM member_scope WHERE member = ?
                ON CONFLICT DO NOTHING
                """, [.uint(to.rawValue), .uint(feed), .uint(from.rawValue)])
        }
    }

    /// Member snapshots the hub aims to send in one `changes` message (one push's members
    /// joining at one place go together, up to a push's length).
    static let snapshotsPerBatch = 128

    /// Members registered before the hub knew them (a programme migrated from another system,
    /// or a simulated world that has run before), as the hub's starting state: their records,
    /// served by `partner`'s stores from the start when partner-group feeds are on. No log
    /// entries: their counters start at zero.
    public func importMembers(_ db: any SQLDatabase, _ records: [MemberRecord], partner: String) throws {
        try CounterSlots.insertMembers(db, records)
        guard try currentScope(db).byPartnerGroup else { return }
        try db.insert(
            "INSERT INTO member_scope(member, partner, since)", values: "(?, ?, 0)", suffix: "ON CONFLICT DO NOTHING",
            rows: records.map { [.uint($0.id.rawValue), .text(partner)] })
    }

    /// Many partners' members at once (a whole programme migrated from another system, or a
    /// simulated world's starting state): `batches` calls `add` once per batch, and each
    /// batch goes in as `importMembers(_:_:partner:)` puts it. Run it inside one transaction.
    /// Into a SQLite hub that holds no members yet, the member table's lookup indexes (card,
    /// phone) are dropped first and built once from the loaded table at the end, which is
    /// several times faster than keeping them sorted row by row; inside the transaction, a
    /// failure rolls the indexes back with the rows.
    public func importMembers(
        _ db: any SQLDatabase, batches: ((_ records: [MemberRecord], _ partner: String) throws -> Void) throws -> Void
    ) throws {
        var indexes: [(name: String, sql: String)] = []
        if db.dialect == .sqlite, try db.scalar("SELECT EXISTS(SELECT 1 FROM members)") == 0 {
            indexes = try db.query(
                """
                SELECT name, sql FROM sqlite_master
                WHERE type = 'index' AND tbl_name = 'members' AND sql IS NOT NULL ORDER BY name
                """
            ).map { ($0.text(0), $0.text(1)) }
            for index in indexes { try db.execute("DROP INDEX \(index.name)") }
        }
        try batches { records, partner in try importMembers(db, records, partner: partner) }
        for index in indexes { try db.execute(index.sql) }
    }

    /// What the hub holds of a member: registration, merge and every counter slot.
    func snapshot(_ db: any SQLDatabase, member: MemberID) throws -> MemberSnapshot? {
        guard
            let row = try db.query(
                "SELECT card, phone_hash, referrer, registered_hlc, merged_into FROM members WHERE id = ?",
                [.uint(member.rawValue)]
            ).first
        else { return nil }
        let record = MemberRecord(
            id: member, card: row.text(0), phoneHash: row.isNull(1) ? [] : row.blob(1),
            referrer: row.isNull(2) ? nil : MemberID(rawValue: row.uint(2)),
            registeredAt: HLCTimestamp(rawValue: row.uint(3)))
        var slots: [SlotWrite] = []
        for slot in try db.query(
            "SELECT account, kind, from_node, to_node, value FROM slots WHERE member = ? LIMIT ?",
            [.uint(member.rawValue), .int(MemberSnapshot.maxSlots)])
        {
            guard let account = Account(rawValue: UInt8(truncatingIfNeeded: slot.int(0))),
                let kind = SlotKind(rawValue: UInt8(truncatingIfNeeded: slot.int(1)))
            else { continue }
            slots.append(
                SlotWrite(
                    member: member, account: account,
                    slot: SlotKey(
                        kind: kind, from: NodeID(UInt32(truncatingIfNeeded: slot.int(2))),
                        to: NodeID(UInt32(truncatingIfNeeded: slot.int(3)))), value: slot.uint(4)))
        }
        return MemberSnapshot(
            record: record, mergedInto: row.isNull(4) ? nil : MemberID(rawValue: row.uint(4)), slots: slots)
    }

    /// A member a store does not hold, by card (or else by one of the phone's keyed hashes):
    /// the record found and the one it was merged into. With partner-group feeds, the store's
    /// partner serves them from the next feed place on, so the store (and its group) receives
    /// their changes from now on. An unknown member is an empty answer.
    public func lookupMember(_ db: any SQLDatabase, card: String, phoneHashes: [[UInt8]], for store: NodeID) throws
        -> [MemberSnapshot]
    {
        var ids: [MemberID] = []
        if !card.isEmpty {
            ids = try db.query("SELECT id FROM members WHERE card = ? ORDER BY id LIMIT 4", [.text(card)])
                .map { MemberID(rawValue: $0.uint(0)) }
        }
        for hash in phoneHashes where ids.isEmpty && !hash.isEmpty {
            ids = try db.query(
                "SELECT id FROM members WHERE phone_hash = ? ORDER BY merged_into IS NOT NULL, id LIMIT 4",
                [.blob(hash)]
            ).map { MemberID(rawValue: $0.uint(0)) }
        }
        var snapshots: [MemberSnapshot] = []
        var seen = Set<MemberID>()
        var queue = ids
        while let member = queue.first, snapshots.count < 8 {
            queue.removeFirst()
            guard seen.insert(member).inserted, let snapshot = try snapshot(db, member: member) else { continue }
            snapshots.append(snapshot)
            if let survivor = snapshot.mergedInto { queue.append(survivor) }
        }
        if !snapshots.isEmpty, try currentScope(db).byPartnerGroup {
            let partner = try partner(db, of: store)
            let since = try nextFeedSequence(db)
            try db.insert(
                "INSERT INTO member_scope(member, partner, since)", values: "(?, ?, ?)",
                suffix: "ON CONFLICT DO NOTHING",
                rows: snapshots.map { [.uint($0.record.id.rawValue), .text(partner), .uint(since)] })
        }
        return snapshots
    }

    /// The feed of a partner-group store after `after`: the entries filed under its group's
    /// partners (`scope_feed`), at most `limit`, and the snapshots of members the group took
    /// on in the places covered. `upTo` covers every place up to the newest.
    func scopedFeed(
        _ db: any SQLDatabase, after: UInt64, limit: Int, store: NodeID, scope: FeedScope
    ) throws -> (entries: [FeedEntry], upTo: UInt64, more: Bool, snapshots: [MemberSnapshot]) {
        let partners = scope.partners(inGroupOf: try partner(db, of: store))
        let list = Array(repeating: "?", count: partners.count).joined(separator: ", ")
        let names = partners.map { SQLValue.text($0) }
        // The newest place first: entries committed after it are left for the next pull,
        // and every scope change up to it is already visible (it was written before).
        let newest = UInt64(try db.scalar("SELECT COALESCE(MAX(feed_seq), 0) FROM entries") ?? 0)
        guard newest > after else { return ([], after, false, []) }
        // A group of one partner (the usual case) reads its rows in index order, with no
        // temporary b-tree; a larger group's rows are made distinct first (an entry may be
        // filed under several of its partners).
        let rows = try db.query(
            partners.count == 1
                ? """
                SELECT e.feed_seq, e.entry FROM scope_feed s JOIN entries e ON e.feed_seq = s.feed_seq
                WHERE s.partner = ? AND s.feed_seq > ? AND s.feed_seq <= ? AND e.origin <> ?
                ORDER BY s.feed_seq LIMIT ?
                """
                : """
                SELECT e.feed_seq, e.entry FROM entries e
                WHERE e.feed_seq IN (
                    SELECT DISTINCT feed_seq FROM scope_feed
                    WHERE partner IN (\(list)) AND feed_seq > ? AND feed_seq <= ?)
                  AND e.origin <> ?
                ORDER BY e.feed_seq LIMIT ?
                """, names + [.uint(after), .uint(newest), .int(Int(store.rawValue)), .int(limit)])
        var more = rows.count == limit
        var upTo = more ? rows[rows.count - 1].uint(0) : newest
        // With one partner a member has one row, so its `since` is its earliest.
        let joined = try db.query(
            partners.count == 1
                ? Self.newcomersOfOnePartner
                : """
                SELECT member, MIN(since) FROM member_scope
                WHERE partner IN (\(list)) AND since > ? AND since <= ?
                GROUP BY member ORDER BY MIN(since), member LIMIT ?
                """, names + [.uint(after), .uint(upTo), .int(SyncMessage.maxSnapshots)])
        if joined.count > Self.snapshotsPerBatch {
            // Too many members joined the group in this stretch for one message: stop short,
            // before the first place whose members do not all fit, or (when one push brought
            // them all) right after that place. Beyond the message's limit at one place (more
            // than a thousand lookups between two pushes), a member is left for the stores to
            // look up when they first serve them.
            let cut = joined[Self.snapshotsPerBatch].uint(1)
            upTo = cut > joined[0].uint(1) ? cut - 1 : cut
            more = true
        }
        var snapshots: [MemberSnapshot] = []
        for row in joined where row.uint(1) <= upTo {
            if let snapshot = try snapshot(db, member: MemberID(rawValue: row.uint(0))) { snapshots.append(snapshot) }
        }
        var entries: [FeedEntry] = []
        for row in rows where row.uint(0) <= upTo {
            entries.append(FeedEntry(feedSequence: row.uint(0), entry: try LogEntry(decoding: row.blob(1))))
        }
        return (entries, upTo, more, snapshots)
    }
}

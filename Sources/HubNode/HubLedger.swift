import NodeKit
import SyncProtocol

/// An enrolled store as the hub knows it.
public struct StoreRecord: Sendable, Equatable {
    public var id: NodeID
    public var name: String
    public var partner: String
    public var publicKey: PublicKey
    public var revoked: Bool
}

/// A member's balance as the hub sees it.
public struct HubMemberView: Sendable, Equatable {
    public var id: MemberID
    public var card: String
    public var balance: Int64
    public var promoBalance: Int64
    public var hubRights: Int64
}

/// Why the hub refused a push.
public enum MergeError: Error, Equatable, Sendable, CustomStringConvertible {
    case refused(EntryError)
    public var description: String {
        switch self {
        case .refused(let error): return error.description
        }
    }
}

/// The hub's merged ledger: every read and write of the hub database, run on the writer
/// thread. Merging is idempotent: entries are keyed by (origin, sequence) and counter
/// slots are raised with MAX, so a retried or duplicated push changes nothing.
public struct HubLedger: Sendable {
    /// The wall clock (Unix milliseconds) stamping the hub's own entries; the simulator sets its own.
    public var now: @Sendable () -> UInt64 = wallClockMilliseconds

    public init() {}

    static let migrator = Migrator(steps: [
        .init(
            version: 1,
            sql: """
                CREATE TABLE stores (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    partner TEXT NOT NULL,
                    public_key BLOB NOT NULL UNIQUE,
                    enrolled_ms INTEGER NOT NULL,
                    revoked_ms INTEGER
                );
                -- Every node's log entries; feed_seq is the order the hub accepted them in.
                CREATE TABLE entries (
                    origin INTEGER NOT NULL,
                    seq INTEGER NOT NULL,
                    feed_seq INTEGER NOT NULL UNIQUE,
                    hlc INTEGER NOT NULL,
                    entry BLOB NOT NULL,
                    PRIMARY KEY (origin, seq)
                ) WITHOUT ROWID;
                CREATE TABLE members (
                    id INTEGER PRIMARY KEY,
                    card TEXT NOT NULL,
                    phone_hash BLOB,
                    referrer INTEGER,
                    registered_hlc INTEGER NOT NULL
                );
                CREATE INDEX members_card ON members(card);
                CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                -- Versioned rules documents distributed to stores.
                CREATE TABLE rules (version INTEGER PRIMARY KEY, document BLOB NOT NULL, published_ms INTEGER NOT NULL);
                """ + CounterSlots.schema),
        promoMigration,
        tokenMigration,
        memberColumnMigration,
    ])

    /// Opens (creating if needed) and migrates the hub database.
    public static func open(path: String) throws -> SQLiteConnection {
        let db = try SQLiteConnection(path: path)
        try db.configureDurable()
        try migrator.migrate(db)
        return db
    }

    // MARK: Stores

    public func enroll(_ db: SQLiteConnection, name: String, partner: String, key: PublicKey) throws -> StoreRecord {
        if let existing = try stores(db).first(where: { $0.publicKey == key || $0.name == name }) {
            throw HubError(
                "store \(existing.name) (id \(existing.id.rawValue)) is already enrolled with this name or key")
        }
        try db.run(
            "INSERT INTO stores(name, partner, public_key, enrolled_ms) VALUES(?, ?, ?, ?)",
            [.text(name), .text(partner), .blob(key.bytes), .uint(wallClockMilliseconds())])
        return StoreRecord(
            id: NodeID(UInt32(db.lastInsertRowID)), name: name, partner: partner, publicKey: key, revoked: false)
    }

    public func revoke(_ db: SQLiteConnection, name: String) throws -> StoreRecord {
        guard var store = try stores(db).first(where: { $0.name == name }) else {
            throw HubError("no store named \(name) is enrolled")
        }
        try db.run(
            "UPDATE stores SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
            [.uint(wallClockMilliseconds()), .int(Int(store.id.rawValue))])
        store.revoked = true
        return store
    }

    public func stores(_ db: SQLiteConnection) throws -> [StoreRecord] {
        try db.query("SELECT id, name, partner, public_key, revoked_ms FROM stores ORDER BY id").compactMap { row in
            guard let key = PublicKey(bytes: row.blob(3)) else { return nil }
            return StoreRecord(
                id: NodeID(UInt32(row.int(0))), name: row.text(1), partner: row.text(2), publicKey: key,
                revoked: !row.isNull(4))
        }
    }

    /// The enrolled, not revoked store with this channel key.
    public func store(_ db: SQLiteConnection, key: PublicKey) throws -> StoreRecord? {
        try stores(db).first { $0.publicKey == key && !$0.revoked }
    }

    // MARK: Merge

    public func originHighWater(_ db: SQLiteConnection, origin: NodeID) throws -> UInt64 {
        UInt64(
            try db.scalar("SELECT COALESCE(MAX(seq), 0) FROM entries WHERE origin = ?", [.int(Int(origin.rawValue))])
                ?? 0)
    }

    private func nextFeedSequence(_ db: SQLiteConnection) throws -> UInt64 {
        UInt64(try db.scalar("SELECT COALESCE(MAX(feed_seq), 0) FROM entries") ?? 0) + 1
    }

    /// Merges entries pushed by `store`: every entry must be the store's own and follow on
    /// from what the hub holds. Returns the store's new high-water mark.
    public func merge(_ db: SQLiteConnection, from store: NodeID, entries: [LogEntry]) throws -> UInt64 {
        var high = try originHighWater(db, origin: store)
        // Feed places are taken once per push, then counted on: the caller's transaction
        // holds the write lock, so nobody else numbers entries meanwhile.
        var feed = try nextFeedSequence(db)
        for entry in entries {
            guard entry.origin == store else {
                throw MergeError.refused(.wrongOrigin(claimed: entry.origin, authenticated: store))
            }
            do { try entry.validateOrigin() } catch { throw MergeError.refused(error) }
            if entry.sequence <= high { continue }  // a retry after a lost ack
            guard entry.sequence == high + 1 else {
                throw MergeError.refused(.gap(origin: store, expected: high + 1, got: entry.sequence))
            }
            try insert(db, entry, feedSequence: feed)
            feed += 1
            high = entry.sequence
        }
        return high
    }

    private func insert(_ db: SQLiteConnection, _ entry: LogEntry, feedSequence: UInt64? = nil) throws {
        try db.run(
            "INSERT INTO entries(origin, seq, feed_seq, hlc, entry, member) VALUES(?, ?, ?, ?, ?, ?)",
            [
                .int(Int(entry.origin.rawValue)), .uint(entry.sequence),
                .uint(try feedSequence ?? nextFeedSequence(db)),
                .uint(entry.timestamp.rawValue), .blob(entry.encoded),
                entry.operation.member.map { .uint($0.rawValue) } ?? .null,
            ])
        if case .registerMember(let record) = entry.operation { try CounterSlots.insertMember(db, record) }
        try CounterSlots.apply(db, entry.effects)
    }

    /// The feed after `after`, without the asking store's own entries. `upTo` covers every
    /// entry scanned, so the store's watermark moves past its own entries too.
    public func feed(_ db: SQLiteConnection, after: UInt64, limit: Int, excluding store: NodeID) throws -> (
        entries: [FeedEntry], upTo: UInt64, more: Bool
    ) {
        let rows = try db.query(
            "SELECT feed_seq, origin, entry FROM entries WHERE feed_seq > ? ORDER BY feed_seq LIMIT ?",
            [.uint(after), .int(limit)])
        var entries: [FeedEntry] = []
        for row in rows where row.int(1) != Int64(store.rawValue) {
            entries.append(FeedEntry(feedSequence: row.uint(0), entry: try LogEntry(decoding: row.blob(2))))
        }
        return (entries, rows.last?.uint(0) ?? after, rows.count == limit)
    }

    // MARK: Rights

    public func counter(_ db: SQLiteConnection, member: MemberID, account: Account) throws -> EscrowCounter {
        try CounterSlots.load(db, member: member, account: account)
    }

    /// Grants up to `points` of the rights the hub holds for this member to `store`.
    /// Returns the points granted and the hub's log entry recording the move.
    public func grant(_ db: SQLiteConnection, member: MemberID, account: Account, to store: NodeID, points: UInt64)
        throws
        -> (granted: UInt64, entry: LogEntry?)
    {
        var counter = try counter(db, member: member, account: account)
        let held = counter.rights(.hub)
        let granted = min(points, held > 0 ? UInt64(held) : 0)
        guard granted > 0 else { return (0, nil) }
        let (slot, value) = try counter.move(by: .hub, to: store, granted)
        let entry = try appendHubEntry(
            db, operation: .rightsMove(member: member, account: account, to: store, points: granted),
            effects: [SlotWrite(member: member, account: account, slot: slot, value: value)])
        return (granted, entry)
    }

    /// Appends an entry to the hub's own log (origin 0) and merges it like any other.
    func appendHubEntry(_ db: SQLiteConnection, operation: Operation, effects: [SlotWrite]) throws -> LogEntry {
        let sequence = try originHighWater(db, origin: .hub) + 1
        var clock = HybridLogicalClock(
            last: HLCTimestamp(
                rawValue: UInt64(bitPattern: try db.scalar("SELECT value FROM meta WHERE key = 'hlc'") ?? 0)))
        let stamp = try clock.now(wall: now())
        try db.run(
            "INSERT INTO meta(key, value) VALUES('hlc', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [.uint(stamp.rawValue)])
        let entry = LogEntry(
            origin: .hub, sequence: sequence, timestamp: stamp, idempotencyKey: "", operation: operation,
            effects: effects)
        try insert(db, entry)
        return entry
    }

    // MARK: Rules

    /// The newest rules document, when it is newer than `version`.
    public func latestRules(_ db: SQLiteConnection, newerThan version: UInt64) throws -> (
        version: UInt64, document: [UInt8]
    )? {
        guard
            let row = try db.query(
                "SELECT version, document FROM rules WHERE version > ? ORDER BY version DESC LIMIT 1", [.uint(version)]
            ).first
        else { return nil }
        return (row.uint(0), row.blob(1))
    }

    // MARK: Queries

    public func member(_ db: SQLiteConnection, card: String) throws -> HubMemberView? {
        guard let row = try db.query("SELECT id FROM members WHERE card = ? ORDER BY id LIMIT 1", [.text(card)]).first
        else {
            return nil
        }
        let id = MemberID(rawValue: row.uint(0))
        let main = try counter(db, member: id, account: .main)
        let promo = try counter(db, member: id, account: .promo)
        return HubMemberView(
            id: id, card: card, balance: main.balance, promoBalance: promo.balance, hubRights: main.rights(.hub))
    }
}

/// A hub failure with a message for the operator.
public struct HubError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

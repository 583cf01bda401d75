import NodeKit
import SyncProtocol

/// The edge replica's schema, as versioned migrations.
enum EdgeSchema {
    static let migrator = Migrator(steps: [
        .init(
            version: 1,
            sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                -- This store's own operation log, numbered 1, 2, 3, ...
                CREATE TABLE log (
                    seq INTEGER PRIMARY KEY,
                    hlc INTEGER NOT NULL,
                    idem_key TEXT,
                    member INTEGER,
                    entry BLOB NOT NULL
                );
                CREATE UNIQUE INDEX log_idem ON log(idem_key) WHERE idem_key IS NOT NULL;
                -- Entries of other nodes, as pulled from the hub's feed.
                CREATE TABLE remote_log (
                    origin INTEGER NOT NULL,
                    seq INTEGER NOT NULL,
                    feed_seq INTEGER NOT NULL,
                    entry BLOB NOT NULL,
                    PRIMARY KEY (origin, seq)
                ) WITHOUT ROWID;
                CREATE TABLE members (
                    id INTEGER PRIMARY KEY,
                    card TEXT NOT NULL UNIQUE,
                    phone_hash BLOB,
                    referrer INTEGER,
                    registered_hlc INTEGER NOT NULL
                );
                CREATE INDEX members_phone ON members(phone_hash) WHERE phone_hash IS NOT NULL;
                """ + CounterSlots.schema),
        .init(
            version: 2,
            sql: """
                -- Purchases of other stores, found by their receipt for refunds.
                ALTER TABLE remote_log ADD COLUMN idem_key TEXT;
                CREATE INDEX remote_log_idem ON remote_log(origin, idem_key) WHERE idem_key IS NOT NULL;
                -- How much of each purchase has been refunded, at any store, and the points moved.
                CREATE TABLE refund_totals (
                    original_store INTEGER NOT NULL,
                    original_key TEXT NOT NULL,
                    refunded_minor INTEGER NOT NULL,
                    reversed INTEGER NOT NULL,
                    returned INTEGER NOT NULL,
                    PRIMARY KEY (original_store, original_key)
                ) WITHOUT ROWID;
                -- Redemptions beyond the rights held here, under the offline risk policy.
                CREATE TABLE exposure (
                    seq INTEGER PRIMARY KEY,
                    member INTEGER NOT NULL,
                    points INTEGER NOT NULL,
                    outage_started_ms INTEGER NOT NULL,
                    at_ms INTEGER NOT NULL
                );
                CREATE INDEX exposure_outage ON exposure(outage_started_ms, member);
                """,
            backfill: { db in
                for row in try db.query("SELECT origin, seq, entry FROM remote_log") {
                    let entry = try LogEntry(decoding: row.blob(2))
                    guard !entry.idempotencyKey.isEmpty else { continue }
                    try db.run(
                        "UPDATE remote_log SET idem_key = ? WHERE origin = ? AND seq = ?",
                        [.text(entry.idempotencyKey), row.values[0], row.values[1]])
                }
            }),
        .init(
            version: 3,
            sql: """
                -- Signed rules documents from the hub; the newest is in force.
                CREATE TABLE rules (version INTEGER PRIMARY KEY, document BLOB NOT NULL);
                """),
        .init(
            version: 4,
            sql: """
                -- Promo-account points given back by refunds (purchases can spend both accounts).
                ALTER TABLE refund_totals ADD COLUMN returned_promo INTEGER NOT NULL DEFAULT 0;
                """),
        .init(
            version: 5,
            sql: """
                -- Rights placement: each member's latest purchase this replica knows of (store,
                -- time), and members whose rights this store hands back at its next push.
                CREATE TABLE visits (member INTEGER PRIMARY KEY, store INTEGER NOT NULL, hlc INTEGER NOT NULL);
                CREATE INDEX visits_store ON visits(store, hlc);
                CREATE TABLE release_queue (member INTEGER PRIMARY KEY);
                """),
        .init(
            version: 6,
            sql: """
                -- A record the hub merged into another of the same person: its cards name the survivor.
                ALTER TABLE members ADD COLUMN merged_into INTEGER;
                """),
        .init(
            version: 7,
            sql: """
                -- How many member records the replica holds, kept as they are written, so that
                -- node.status does not count a million rows on the writer.
                INSERT INTO meta(key, value) SELECT 'members', COUNT(*) FROM members;
                CREATE TRIGGER members_counted AFTER INSERT ON members
                BEGIN UPDATE meta SET value = value + 1 WHERE key = 'members'; END;
                CREATE TRIGGER members_uncounted AFTER DELETE ON members
                BEGIN UPDATE meta SET value = value - 1 WHERE key = 'members'; END;
                """),
    ])
}

import NodeKit

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
                """ + CounterSlots.schema)
    ])
}

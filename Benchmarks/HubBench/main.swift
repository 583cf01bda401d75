// The hub's merge rate into SQLite and into PostgreSQL, each against a raw batched upsert of
// the same rows into the same database, in the same run. Run with `make bench` (release
// build); the PostgreSQL rows need BENCH_POSTGRES (scripts/bench starts a local server).
import Foundation
import HubNode
import NodeKit
import SyncProtocol

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

let stores = 100
let perStore = 2_000
let batch = 512
let work = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(
    ".build/bench-hub-\(getpid())")
try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: work) }

let stamp = HLCTimestamp(milliseconds: 1_764_000_000_000, logical: 0)
var pushes: [(store: NodeID, entries: [LogEntry])] = []
for store in 1...stores {
    let node = NodeID(UInt32(store))
    var entries: [LogEntry] = []
    for index in 0..<perStore {
        let member = MemberID(origin: node, serial: UInt32(index % 500 + 1))
        entries.append(
            LogEntry(
                origin: node, sequence: UInt64(index + 1), timestamp: stamp, idempotencyKey: "1/\(index)",
                operation: .purchase(
                    PurchaseRecord(
                        member: member, lane: "1", receipt: "\(index)", amountMinor: 10_000, pointsEarned: 5,
                        pointsRedeemed: 0)),
                effects: [
                    SlotWrite(member: member, account: .main, slot: .earned(node), value: UInt64(index / 500 + 1) * 5)
                ]))
    }
    for start in stride(from: 0, to: perStore, by: batch) {
        pushes.append((node, Array(entries[start..<min(start + batch, perStore)])))
    }
}
let total = stores * perStore

// The hub's merge: validation, gap check, feed numbering, slot MAX-upserts, one transaction per push.
let hubDB = try HubLedger.open(path: work.appendingPathComponent("hub.sqlite").path)
let ledger = HubLedger()
var start = now()
for push in pushes { _ = try hubDB.transaction { try ledger.merge(hubDB, from: push.store, entries: push.entries) } }
let mergeRate = Double(total) / (now() - start)

// Raw: the same rows (entry blobs and slot upserts) with prepared statements, same batches.
// The hub's storage set-up: WAL, synchronous=FULL, batched WAL writes.
let rawDB = try SQLiteConnection.openDurable(path: work.appendingPathComponent("raw.sqlite").path)
try rawDB.execute(
    """
    CREATE TABLE entries (origin INTEGER NOT NULL, seq INTEGER NOT NULL, feed_seq INTEGER NOT NULL UNIQUE,
        hlc INTEGER NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (origin, seq)) WITHOUT ROWID;
    """ + CounterSlots.schema)
let blobs = pushes.map { $0.entries.map(\.encoded) }
var feed: UInt64 = 0
start = now()
for (pushIndex, push) in pushes.enumerated() {
    try rawDB.transaction {
        for (index, entry) in push.entries.enumerated() {
            feed += 1
            try rawDB.run(
                "INSERT INTO entries(origin, seq, feed_seq, hlc, entry) VALUES(?, ?, ?, ?, ?)",
                [
                    .int(Int(entry.origin.rawValue)), .uint(entry.sequence), .uint(feed),
                    .uint(entry.timestamp.rawValue),
                    .blob(blobs[pushIndex][index]),
                ])
            try CounterSlots.apply(rawDB, entry.effects)
        }
    }
}
let rawRate = Double(total) / (now() - start)

// PostgreSQL: the hub's merge through its backend (advisory write lock, high-water and feed
// queries, multi-row inserts, slot writes folded per slot and raised with GREATEST), against
// the raw batched upsert a hand-written loader would send: the same entry rows and the same
// slot rows (folded per slot, as PostgreSQL requires within one statement), one transaction
// per push. Each in a schema of its own, dropped afterwards.
var postgres: (merge: Double, raw: Double)?
if let url = ProcessInfo.processInfo.environment["BENCH_POSTGRES"] {
    let mergeSchema = "bench_merge_\(getpid())"
    let rawSchema = "bench_raw_\(getpid())"
    let mergeDB = try HubLedger.open(.postgres(try PostgresLocation(url: url + "?schema=" + mergeSchema)))
    start = now()
    for push in pushes {
        _ = try mergeDB.transaction { try ledger.merge(mergeDB, from: push.store, entries: push.entries) }
    }
    let pgMerge = Double(total) / (now() - start)

    let raw = try PostgreSQLConnection(try PostgresLocation(url: url + "?schema=" + rawSchema))
    try raw.execute(
        """
        CREATE TABLE entries (origin BIGINT NOT NULL, seq BIGINT NOT NULL, feed_seq BIGINT NOT NULL UNIQUE,
            hlc BIGINT NOT NULL, entry BYTEA NOT NULL, PRIMARY KEY (origin, seq));
        CREATE TABLE slots (member BIGINT NOT NULL, account BIGINT NOT NULL, kind BIGINT NOT NULL,
            from_node BIGINT NOT NULL, to_node BIGINT NOT NULL, value BIGINT NOT NULL,
            PRIMARY KEY (member, account, kind, from_node, to_node));
        """)
    feed = 0
    start = now()
    for (pushIndex, push) in pushes.enumerated() {
        var slots: [[UInt64]: UInt64] = [:]
        var entryRows: [[SQLValue]] = []
        for (index, entry) in push.entries.enumerated() {
            feed += 1
            entryRows.append([
                .int(Int(entry.origin.rawValue)), .uint(entry.sequence), .uint(feed),
                .uint(entry.timestamp.rawValue), .blob(blobs[pushIndex][index]),
            ])
            for effect in entry.effects {
                let key: [UInt64] = [
                    effect.member.rawValue, UInt64(effect.account.rawValue), UInt64(effect.slot.kind.rawValue),
                    UInt64(effect.slot.from.rawValue), UInt64(effect.slot.to.rawValue),
                ]
                slots[key] = max(slots[key] ?? 0, effect.value)
            }
        }
        try raw.run("BEGIN", [])
        try raw.insert(
            "INSERT INTO entries(origin, seq, feed_seq, hlc, entry)", values: "(?, ?, ?, ?, ?)", rows: entryRows)
        try raw.insert(
            "INSERT INTO slots(member, account, kind, from_node, to_node, value)", values: "(?, ?, ?, ?, ?, ?)",
            suffix:
                "ON CONFLICT(member, account, kind, from_node, to_node) DO UPDATE SET value = GREATEST(slots.value, excluded.value)",
            rows: slots.map { key, value in key.map { SQLValue.uint($0) } + [.uint(value)] })
        try raw.run("COMMIT", [])
    }
    let pgRaw = Double(total) / (now() - start)
    postgres = (pgMerge, pgRaw)
    for schema in [mergeSchema, rawSchema] { try raw.run("DROP SCHEMA \(schema) CASCADE", []) }
}

func line(_ name: String, _ value: Double, _ note: String) {
    print(name.padding(toLength: 52, withPad: " ", startingAt: 0) + String(format: "%10.0f  entries/s  ", value) + note)
}
line("raw batched upsert of the same rows (512 per txn)", rawRate, "the baseline")
line(
    "hub merge into SQLite (512 per push)", mergeRate,
    String(format: "%.0f %% of the baseline (target >= 70 %%)", 100 * mergeRate / rawRate))
if let postgres {
    line("raw batched upsert into PostgreSQL (512 per txn)", postgres.raw, "the baseline")
    line(
        "hub merge into PostgreSQL (512 per push)", postgres.merge,
        String(format: "%.0f %% of the baseline (target >= 70 %%)", 100 * postgres.merge / postgres.raw))
} else {
    print("PostgreSQL rows skipped: set BENCH_POSTGRES (scripts/postgres start prints an address)")
}

if let path = ProcessInfo.processInfo.environment["BENCH_JSON"] {
    var rows: [JSONValue] = [
        .object([
            "name": "raw batched upsert into SQLite, 512 rows per transaction", "value": .double(rawRate),
            "unit": "entries/s", "note": "the baseline",
        ]),
        .object([
            "name": "hub merge into SQLite, 512 entries per push", "value": .double(mergeRate), "unit": "entries/s",
            "note": .string(String(format: "%.0f %% of the raw upsert (target >= 70 %%)", 100 * mergeRate / rawRate)),
        ]),
    ]
    if let postgres {
        rows += [
            .object([
                "name": "raw batched upsert into PostgreSQL, 512 rows per transaction", "value": .double(postgres.raw),
                "unit": "entries/s", "note": "the baseline (multi-row INSERT and GREATEST upsert, fsync on)",
            ]),
            .object([
                "name": "hub merge into PostgreSQL, 512 entries per push", "value": .double(postgres.merge),
                "unit": "entries/s",
                "note": .string(
                    String(format: "%.0f %% of the raw upsert (target >= 70 %%)", 100 * postgres.merge / postgres.raw)),
            ]),
        ]
    }
    try JSONValue.array(rows).jsonLine.write(toFile: path, atomically: true, encoding: .utf8)
}

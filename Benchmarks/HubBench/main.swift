// The hub's merge rate into SQLite against a raw batched upsert of the same rows into the
// same kind of database, in the same run. Run with `make bench` (release build).
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
let rawDB = try SQLiteConnection(path: work.appendingPathComponent("raw.sqlite").path)
try rawDB.configureDurable()
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

func line(_ name: String, _ value: Double, _ note: String) {
    print(name.padding(toLength: 52, withPad: " ", startingAt: 0) + String(format: "%10.0f  entries/s  ", value) + note)
}
line("raw batched upsert of the same rows (512 per txn)", rawRate, "the baseline")
line(
    "hub merge into SQLite (512 per push)", mergeRate,
    String(format: "%.0f %% of the baseline (target >= 70 %%)", 100 * mergeRate / rawRate))

if let path = ProcessInfo.processInfo.environment["BENCH_JSON"] {
    let rows: [JSONValue] = [
        .object([
            "name": "raw batched upsert into SQLite, 512 rows per transaction", "value": .double(rawRate),
            "unit": "entries/s", "note": "the baseline",
        ]),
        .object([
            "name": "hub merge into SQLite, 512 entries per push", "value": .double(mergeRate), "unit": "entries/s",
            "note": .string(String(format: "%.0f %% of the raw upsert (target >= 70 %%)", 100 * mergeRate / rawRate)),
        ]),
    ]
    try JSONValue.array(rows).jsonLine.write(toFile: path, atomically: true, encoding: .utf8)
}

import Foundation
import Testing

@testable import NodeKit

/// The wal-batch VFS (CWALBatch) under the node's writer connections: each commit's WAL
/// frames reach the kernel in one write, and nothing else changes.
@Suite struct BatchedWALTests {
    /// Write system calls this thread has made so far (`syscw` in /proc/thread-self/io).
    func writeCalls() throws -> Int {
        let text = try String(contentsOfFile: "/proc/thread-self/io", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("syscw:") })
        return try #require(Int(line.split(separator: " ").last ?? ""))
    }

    @Test func theNodesLedgersUseIt() throws {
        let db = try SQLiteConnection.openDurable(path: temporaryPath("ledger.sqlite"), pageSize: 1_024)
        #expect(db.batchedWAL)
        #expect(try db.query("PRAGMA journal_mode").first?.text(0) == "wal")
        #expect(try db.scalar("PRAGMA synchronous") == 2)
        #expect(try SQLiteConnection(path: temporaryPath("plain.sqlite")).batchedWAL == false)
        // An in-memory database has no WAL to batch.
        #expect(try SQLiteConnection.openDurable(path: ":memory:").batchedWAL == false)
    }

    @Test func aCommitIsVisibleToAnotherConnectionAtOnce() throws {
        let path = temporaryPath("visible.sqlite")
        let writer = try SQLiteConnection.openDurable(path: path, pageSize: 1_024)
        try writer.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        let reader = try SQLiteConnection(path: path, readOnly: true)
        for round in 1...50 {
            try writer.execute("BEGIN IMMEDIATE")
            for index in 0..<20 {
                try writer.run(
                    "INSERT INTO t(k, v) VALUES(?, ?)",
                    [.int(round * 1_000 + index), .blob([UInt8](repeating: UInt8(round), count: 300))])
            }
            try writer.execute("COMMIT")
            #expect(try reader.scalar("SELECT count(*) FROM t") == Int64(round * 20))
            #expect(try reader.scalar("SELECT sum(length(v)) FROM t WHERE k / 1000 = ?", [.int(round)]) == 6_000)
        }
    }

    @Test func aCommitWritesItsFramesInOneCall() throws {
        func calls(batched: Bool) throws -> Int {
            let path = temporaryPath("calls.sqlite")
            let db = try SQLiteConnection(path: path, batchedWAL: batched)
            try db.configureDurable(pageSize: 1_024)
            try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            var fewest = Int.max
            for round in 0..<3 {
                // 40 rows of 600 bytes: some 40 frames, each written as header and page
                // without batching.
                let before = try writeCalls()
                try db.execute("BEGIN IMMEDIATE")
                for index in 0..<40 {
                    try db.run(
                        "INSERT INTO t(k, v) VALUES(?, ?)",
                        [.int(round * 100 + index), .blob([UInt8](repeating: 1, count: 600))])
                }
                try db.execute("COMMIT")
                fewest = min(fewest, try writeCalls() - before)
            }
            return fewest
        }
        let plain = try calls(batched: false)
        let batched = try calls(batched: true)
        #expect(plain >= 60)
        #expect(batched <= 4)
    }

    @Test func aTransactionLargerThanTheBatchAndTheCacheReadsBack() throws {
        let path = temporaryPath("large.sqlite")
        let db = try SQLiteConnection.openDurable(path: path, pageSize: 1_024)
        // A 20-page cache makes SQLite spill pages to the WAL mid-transaction and read them
        // back; 3,000 rows of 500 bytes are many batches of 64 KiB.
        try db.execute("PRAGMA cache_size = 20")
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        try db.execute("BEGIN IMMEDIATE")
        for index in 0..<3_000 {
            try db.run(
                "INSERT INTO t(k, v) VALUES(?, ?)",
                [.int((index * 7_919) % 3_000), .blob([UInt8](repeating: UInt8(index % 251), count: 500))])
        }
        #expect(try db.scalar("SELECT count(*) FROM t") == 3_000)
        try db.execute("COMMIT")
        #expect(try db.query("PRAGMA integrity_check").first?.text(0) == "ok")
        let other = try SQLiteConnection(path: path)
        #expect(try other.scalar("SELECT sum(length(v)) FROM t") == 1_500_000)
        _ = try other.query("PRAGMA wal_checkpoint(TRUNCATE)")
        #expect(try other.query("PRAGMA integrity_check").first?.text(0) == "ok")
        try db.execute("BEGIN IMMEDIATE")
        try db.run("DELETE FROM t WHERE k % 2 = 0")
        try db.execute("COMMIT")
        #expect(try other.scalar("SELECT count(*) FROM t") == 1_500)
    }

    @Test func aWeakerSyncIsRefused() throws {
        let db = try SQLiteConnection.openDurable(path: temporaryPath("sync.sqlite"))
        for sql in ["PRAGMA synchronous=NORMAL", "pragma Synchronous = off", "PRAGMA main.synchronous = 1"] {
            let error = try #require(throws: SQLiteError.self) { try db.execute(sql) }
            #expect(error.message.contains("synchronous=FULL"))
            #expect(throws: SQLiteError.self) { try db.run(sql) }
        }
        try db.execute("PRAGMA synchronous = FULL; PRAGMA synchronous=EXTRA")
        #expect(try db.scalar("PRAGMA synchronous") == 3)
        let plain = try SQLiteConnection(path: temporaryPath("plain.sqlite"))
        try plain.execute("PRAGMA synchronous=NORMAL")
    }
}

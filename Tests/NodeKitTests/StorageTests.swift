import CSQLite
import Foundation
import SyncProtocol
import Testing

@testable import NodeKit

func temporaryPath(_ name: String) -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nodekit-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent(name).path
}

@Suite struct SQLiteTests {
    @Test func typedValuesRoundTrip() throws {
        let db = try SQLiteConnection(path: ":memory:")
        try db.execute("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n INTEGER)")
        try db.run("INSERT INTO t VALUES (?, ?, ?, ?)", [.uint(UInt64.max), "text", .blob([0, 1, 255]), nil])
        let row = try #require(try db.query("SELECT i, s, b, n FROM t").first)
        #expect(row.uint(0) == UInt64.max)
        #expect(row.text(1) == "text")
        #expect(row.blob(2) == [0, 1, 255])
        #expect(row.isNull(3))
    }

    /// The first connection turns SQLite's memory statistics off for the process: no global
    /// counting around every allocation.
    @Test func sqliteKeepsNoMemoryStatistics() throws {
        let db = try SQLiteConnection(path: ":memory:")
        try db.execute("CREATE TABLE t (v BLOB)")
        try db.run("INSERT INTO t VALUES (?)", [.blob([UInt8](repeating: 1, count: 100_000))])
        #expect(try db.query("SELECT length(v) FROM t").first?.int(0) == 100_000)
        #expect(sqlite3_memory_used() == 0)
    }

    /// A statement written as a literal is found by the literal's address; the same text
    /// built at run time finds the same statement by its text, and never joins the literals
    /// (heap text is freed and its address reused).
    @Test func literalStatementsAreFoundByAddressAndBuiltTextByItsText() throws {
        let db = try SQLiteConnection(path: ":memory:")
        #expect(try db.query("SELECT 40 + ? AS answer", [.int(2)]).first?.int(0) == 42)
        #expect(try db.query("SELECT 40 + ? AS answer", [.int(3)]).first?.int(0) == 43)
        #expect(db.cachedStatements == (1, 1))
        for round in 0..<200 {
            // The same text as the literal, and a text of its own each round.
            let same = ["SELECT", "40", "+", "?", "AS", "answer"].joined(separator: " ")
            #expect(try db.query(same, [.int(round)]).first?.int(0) == Int64(40 + round))
            let own = "SELECT " + String(round) + " + ? AS own"
            #expect(try db.query(own, [.int(1)]).first?.int(0) == Int64(round + 1))
        }
        #expect(db.cachedStatements == (201, 1))
        // A different literal of the same length is told apart by its text. (Text of 15
        // bytes or fewer is held inside the string itself, with no address of its own: such
        // statements are found by their text.)
        #expect(try db.query("SELECT 50 + ? AS answer", [.int(2)]).first?.int(0) == 52)
        #expect(db.cachedStatements == (202, 2))
    }

    /// A call that binds fewer values than the statement has parameters never sees the last
    /// call's values: what it leaves out is NULL.
    @Test func parametersLeftOutAreNullNotTheLastCallsValues() throws {
        let db = try SQLiteConnection(path: ":memory:")
        let sql = "SELECT coalesce(?, 'none') || '-' || coalesce(?, 'none')"
        #expect(try db.query(sql, [.text("a"), .text("b")]).first?.text(0) == "a-b")
        #expect(try db.query(sql, [.text("c")]).first?.text(0) == "c-none")
        #expect(try db.query(sql, [.text("d"), .text("e")]).first?.text(0) == "d-e")
        #expect(try db.query(sql).first?.text(0) == "none-none")
    }

    @Test func failuresCarryTheCodeAndTheStatement() throws {
        let db = try SQLiteConnection(path: ":memory:")
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        try db.run("INSERT INTO t VALUES (1)")
        let error = try #require(throws: SQLiteError.self) { try db.run("INSERT INTO t VALUES (1)") }
        #expect(error.isConstraintViolation)
        #expect(error.sql == "INSERT INTO t VALUES (1)")
        #expect(throws: SQLiteError.self) { try db.query("SELECT * FROM missing") }
    }

    @Test func durableSettingsAreWALAndFullSync() throws {
        let db = try SQLiteConnection(path: temporaryPath("durable.sqlite"))
        try db.configureDurable()
        #expect(try db.query("PRAGMA journal_mode").first?.text(0) == "wal")
        #expect(try db.scalar("PRAGMA synchronous") == 2)
    }

    /// A multi-row insert applies its rows in order, each as if alone: an upsert later in a
    /// chunk sees the rows before it, in full chunks of 16 and in the one-row rest alike.
    @Test(arguments: [1, 15, 16, 17, 40])
    func chunkedInsertsApplyRowsInOrder(count: Int) throws {
        let db = try SQLiteConnection(path: ":memory:")
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL, n INTEGER NOT NULL)")
        // Keys repeat (k = i % 7), so most rows update one inserted earlier, maybe in the same chunk.
        let rows: [[SQLValue]] = (0..<count).map { [.int($0 % 7), .int($0), 1] }
        try db.insert(
            "INSERT INTO t(k, v, n)", values: "(?, ?, ?)",
            suffix: "ON CONFLICT(k) DO UPDATE SET v = excluded.v, n = t.n + 1", rows: rows)
        let stored = try db.query("SELECT k, v, n FROM t ORDER BY k").map { [$0.int(0), $0.int(1), $0.int(2)] }
        var expected: [Int64: [Int64]] = [:]
        for index in 0..<count {
            let key = Int64(index % 7)
            expected[key] = [key, Int64(index), (expected[key]?[2] ?? 0) + 1]
        }
        #expect(stored == expected.keys.sorted().compactMap { expected[$0] })
        // The same rows again, ignored on conflict, change nothing.
        try db.insert("INSERT INTO t(k, v, n)", values: "(?, ?, ?)", suffix: "ON CONFLICT DO NOTHING", rows: rows)
        #expect(try db.scalar("SELECT COUNT(*) FROM t") == Int64(min(count, 7)))
    }

    /// A memdb URI opens a private in-memory database (no batching, nothing on disk) that
    /// commits and rolls back like any other.
    @Test func memdbDatabasesArePrivateAndInMemory() throws {
        let file = "nodekit-\(UUID().uuidString)"
        let name = "file:\(file)?vfs=memdb"
        #expect(SQLiteConnection.isInMemory(name))
        #expect(!SQLiteConnection.isInMemory(temporaryPath("plain.sqlite")))
        let first = try SQLiteConnection.openDurable(path: name)
        #expect(!first.batchedWAL)
        try first.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        _ = try first.transaction { try first.run("INSERT INTO t VALUES (1)") }
        #expect(throws: SQLiteError.self) {
            try first.transaction {
                try first.run("INSERT INTO t VALUES (2)")
                try first.run("INSERT INTO t VALUES (1)")
            }
        }
        #expect(try first.query("SELECT k FROM t").map { $0.int(0) } == [1])
        let second = try SQLiteConnection(path: name)
        #expect(try second.scalar("SELECT COUNT(*) FROM sqlite_master") == 0)
        #expect(!FileManager.default.fileExists(atPath: file))
    }

    /// An insert's statement, put together from literal parts, is found by address like a
    /// literal: the same parts give one statement however often they run, and parts that are
    /// not literals still insert what they say.
    @Test func insertsPutTogetherFromLiteralsAreFoundByAddress() throws {
        let db = try SQLiteConnection(path: ":memory:")
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        for key in 0..<40 {
            try db.insert("INSERT INTO t(k, v)", values: "(?, ?)", rows: [[.int(key), .text("v\(key)")]])
            try db.insert(
                "INSERT INTO t(k, v)", values: "(?, ?)", suffix: "ON CONFLICT DO NOTHING",
                rows: [[.int(key), .text("again")]])
        }
        #expect(db.cachedStatements == (2, 2))
        let many = (100..<140).map { [SQLValue.int($0), .text("w")] }
        try db.insert("INSERT INTO t(k, v)", values: "(?, ?)", rows: many)
        #expect(db.cachedStatements == (3, 3), "the 16-row statement, then the one-row one again")
        let built = "INSERT INTO t(k, " + "v)"
        try db.insert(built, values: "(?, ?)", rows: [[.int(200), .text("built")]])
        #expect(db.cachedStatements.byLiteral == 3, "text built at run time is found by its text")
        #expect(try db.scalar("SELECT COUNT(*) FROM t") == 81)
        #expect(try db.query("SELECT v FROM t WHERE k = 7").first?.text(0) == "v7")
    }

    /// A memdb database moved into a reserved buffer keeps what it held, takes more than the
    /// buffer (memdb grows it then), and rolls back as before; `:memory:` is left as it is.
    @Test func aMemdbDatabaseGrowsInItsReservedBuffer() throws {
        let name = "file:reserve-\(UUID().uuidString)?vfs=memdb"
        #expect(SQLiteConnection.isPrivateInMemory(name))
        #expect(!SQLiteConnection.isPrivateInMemory("file:/shared-\(UUID().uuidString)?vfs=memdb"))
        #expect(!SQLiteConnection.isPrivateInMemory("file::memory:?cache=shared"))
        let db = try SQLiteConnection(path: name)
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        try db.run("INSERT INTO t VALUES (1, zeroblob(1000))")
        try db.reserveMemoryFile(bytes: 256 << 10)
        #expect(try db.scalar("SELECT length(v) FROM t WHERE k = 1") == 1_000)
        _ = try db.transaction {
            for key in 2...600 { try db.run("INSERT INTO t VALUES (?, zeroblob(1000))", [.int(key)]) }
        }
        #expect(try db.scalar("SELECT COUNT(*) FROM t") == 600)
        #expect(
            try db.scalar("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")! > 256 << 10)
        #expect(throws: SQLiteError.self) {
            try db.transaction {
                try db.run("INSERT INTO t VALUES (601, NULL)")
                try db.run("INSERT INTO t VALUES (1, NULL)")
            }
        }
        #expect(try db.scalar("SELECT COUNT(*) FROM t") == 600, "the failed transaction left nothing")
        let plain = try SQLiteConnection(path: ":memory:")
        try plain.reserveMemoryFile(bytes: 1 << 20)
        try plain.execute("CREATE TABLE u (x)")
        #expect(throws: SQLiteError.self) {
            try plain.transaction {
                try plain.run("INSERT INTO u VALUES (1)")
                try plain.run("INSERT INTO nowhere VALUES (1)")
            }
        }
        #expect(try plain.scalar("SELECT COUNT(*) FROM u") == 0, "a plain BEGIN rolls back the same")
    }

    @Test func migrationsRunOnceInOrderFromAnyEarlierVersion() throws {
        let migrator = Migrator(steps: [
            .init(version: 1, sql: "CREATE TABLE a (x INTEGER)"),
            .init(version: 2, sql: "ALTER TABLE a ADD COLUMN y INTEGER"),
            .init(version: 3, sql: "CREATE TABLE b (z INTEGER)"),
        ])
        for start: Int64 in 0...3 {
            let db = try SQLiteConnection(path: ":memory:")
            try migrator.migrate(db, upTo: start)
            #expect(try db.userVersion == start)
            try migrator.migrate(db)
            try migrator.migrate(db)
            #expect(try db.userVersion == 3)
            try db.run("INSERT INTO a (x, y) VALUES (1, 2)")
            try db.run("INSERT INTO b (z) VALUES (3)")
        }
    }

    @Test func aDatabaseFromANewerBuildIsRefused() throws {
        let db = try SQLiteConnection(path: ":memory:")
        try db.execute("PRAGMA user_version = 9")
        #expect(throws: SQLiteError.self) { try Migrator(steps: [.init(version: 1, sql: "SELECT 1")]).migrate(db) }
    }
}

@Suite struct DatabaseWriterTests {
    @Test func concurrentJobsCommitTogetherAndAFailingJobRollsBackAlone() throws {
        let path = temporaryPath("writer.sqlite")
        let db = try SQLiteConnection(path: path)
        try db.configureDurable()
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        let loop = try EventLoop()
        let writer = try DatabaseWriter(loop: loop, connection: db)
        var succeeded = 0
        var failed = 0
        for key in 0..<200 {
            writer.submit({ db in
                try db.run("INSERT INTO t VALUES (?)", [.int(key)])
                if key % 50 == 0 { throw HarnessFailure() }
                return key
            }) { result in
                switch result {
                case .success: succeeded += 1
                case .failure: failed += 1
                }
                if succeeded + failed == 200 { loop.stop() }
            }
        }
        loop.run()
        let stats = writer.statistics
        writer.close()
        loop.shutdown()
        #expect(succeeded == 196 && failed == 4)
        #expect(stats.jobs == 200)
        #expect(stats.transactions < 200, "group commit gathers jobs into fewer transactions")
        let check = try SQLiteConnection(path: path)
        #expect(try check.scalar("SELECT COUNT(*) FROM t") == 196)
        #expect(try check.scalar("SELECT COUNT(*) FROM t WHERE k % 50 = 0") == 0)
    }

    /// Checkpoints run on their own connection and thread while the writer keeps committing:
    /// the rows reach the database file itself and none is lost.
    @Test func checkpointsCopyTheWALIntoTheDatabaseFileBesideTheWriter() throws {
        let path = temporaryPath("checkpoint.sqlite")
        let db = try SQLiteConnection(path: path)
        try db.configureDurable()
        try db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
        let emptySize = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        let loop = try EventLoop()
        let writer = try DatabaseWriter(loop: loop, connection: db)
        let total = 300
        var done = 0
        // One job at a time, so each is a transaction of its own.
        func next() {
            let key = done
            writer.submit({ db in
                try db.run("INSERT INTO t VALUES (?, ?)", [.int(key), .blob([UInt8](repeating: 1, count: 2_000))])
            }) { result in
                if case .failure = result { Issue.record("job \(done) failed") }
                done += 1
                if done == total { loop.stop() } else { next() }
            }
        }
        next()
        loop.run()
        writer.close()
        loop.shutdown()
        let checkpoints = writer.checkpointStatistics
        #expect(checkpoints.checkpoints > 0, "the writer asked for a checkpoint when idle after 200 transactions")
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
        #expect(size > emptySize + 200 * 2_000, "the pages reached the database file (\(emptySize) -> \(size) bytes)")
        let check = try SQLiteConnection(path: path)
        #expect(try check.scalar("SELECT COUNT(*) FROM t") == Int64(total))
    }

    struct HarnessFailure: Error {}
}

@Suite struct LineBufferTests {
    @Test func splitsLinesAcrossChunksAndDropsCR() throws {
        var buffer = LineBuffer()
        #expect(try buffer.append(Array("{\"a\":".utf8)).isEmpty)
        let lines = try buffer.append(Array("1}\r\n{}\npartial".utf8))
        #expect(lines == [Array("{\"a\":1}".utf8), Array("{}".utf8)])
    }

    @Test func refusesAnOverlongLine() {
        var buffer = LineBuffer(maxLineBytes: 16)
        #expect(throws: LineBuffer.LineTooLong.self) { _ = try buffer.append([UInt8](repeating: 65, count: 17)) }
    }
}

@Suite struct KeyFileTests {
    @Test func keyFilesAreOwnerOnlyAndRoundTrip() throws {
        let path = temporaryPath("node.key")
        let pair = try KeyFile.generate(at: path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try KeyFile.load(from: path).publicKey == pair.publicKey)
        #expect(throws: KeyFile.Failure.self) { _ = try KeyFile.generate(at: path) }
    }

    @Test func aKeyFileReadableByOthersIsRefused() throws {
        let path = temporaryPath("open.key")
        _ = try KeyFile.generate(at: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        let error = try #require(throws: KeyFile.Failure.self) { _ = try KeyFile.load(from: path) }
        #expect(error.description.contains("chmod 600"))
    }

    @Test func aTruncatedKeyFileIsRefused() throws {
        let path = temporaryPath("short.key")
        _ = FileManager.default.createFile(
            atPath: path, contents: Data([1, 2, 3]), attributes: [.posixPermissions: 0o600])
        #expect(throws: KeyFile.Failure.self) { _ = try KeyFile.load(from: path) }
    }
}

/// The table that finds statements by their SQL's address.
struct AddressTableTests {
    @Test func keepsFindsAndReplacesAcrossGrowth() {
        var table = AddressTable<Int>()
        #expect(table.find(0x1000) == nil)
        // Addresses a page apart, as literals in one image are, and enough to grow it twice.
        let addresses = (1...300).map { UInt(0x40_0000 + $0 * 4_096) }
        for (index, address) in addresses.enumerated() { table.set(index, for: address) }
        #expect(table.count == 300)
        #expect(addresses.enumerated().allSatisfy { table.find($1) == $0 })
        #expect(table.find(0x40_0000 + 301 * 4_096) == nil)
        table.set(-1, for: addresses[7])
        #expect(table.count == 300 && table.find(addresses[7]) == -1, "replaced, not added")
        table.removeAll()
        #expect(table.count == 0 && table.find(addresses[0]) == nil)
    }
}

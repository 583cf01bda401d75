import Foundation
import NodeKit
import SyncProtocol
import Testing

@testable import HubNode

/// Several hub processes on one database: each has its own connection and writer, and
/// merges the stores it serves. These tests play those writers as threads.
@Suite struct SharedDatabaseTests {
    /// Store `store`'s log: a registration, then purchases, every fifth moving its points to the hub.
    static func log(of store: NodeID, count: UInt64) -> [LogEntry] {
        let member = MemberID(origin: store, serial: 1)
        var earned: UInt64 = 0
        var moved: UInt64 = 0
        return (1...count).map { sequence in
            if sequence == 1 {
                return LogEntry(
                    origin: store, sequence: 1, timestamp: HLCTimestamp(rawValue: 1), idempotencyKey: "",
                    operation: .registerMember(
                        MemberRecord(
                            id: member, card: "46000000\(store.rawValue)0015", phoneHash: [], referrer: nil,
                            registeredAt: HLCTimestamp(rawValue: 1))), effects: [])
            }
            earned += 10
            var effects = [SlotWrite(member: member, account: .main, slot: .earned(store), value: earned)]
            var operation = Operation.purchase(
                PurchaseRecord(
                    member: member, lane: "1", receipt: "r\(sequence)", amountMinor: 20_000, pointsEarned: 10,
                    pointsRedeemed: 0))
            if sequence % 5 == 0 {
                moved = earned
                effects.append(SlotWrite(member: member, account: .main, slot: .moved(store, .hub), value: moved))
                operation = .rightsMove(member: member, account: .main, to: .hub, points: moved)
            }
            return LogEntry(
                origin: store, sequence: sequence, timestamp: HLCTimestamp(rawValue: sequence << 16),
                idempotencyKey: "", operation: operation, effects: effects)
        }
    }

    @Test(arguments: HubBackend.available)
    func twoWritersNumberTheFeedWithoutGapsAndAReaderNeverSkipsAnEntry(backend: HubBackend) throws {
        let location = try freshHubLocation(backend)
        let setup = try HubLedger.open(location)
        let ledger = HubLedger()
        let stores = (1...4).map { NodeID(UInt32($0)) }
        for store in stores {
            _ = try ledger.enroll(
                setup, name: "s\(store.rawValue)", partner: "p", key: SigningKeyPair.generate().publicKey)
        }
        let perStore: UInt64 = 120
        let failures = Failures()
        let done = Failures()
        // Two "hubs", each serving two stores in pushes of 6 entries and granting rights
        // from the hub's share as it goes (hub entries are numbered under the same lock).
        let writers = (0..<2).map { hub in
            Thread {
                do {
                    let db = try HubLedger.open(location)
                    let mine = [stores[hub], stores[hub + 2]]
                    let logs = mine.map { Self.log(of: $0, count: perStore) }
                    for start in stride(from: 0, to: Int(perStore), by: 6) {
                        for (store, log) in zip(mine, logs) {
                            try db.transaction {
                                _ = try ledger.merge(db, from: store, entries: Array(log[start..<start + 6]))
                                _ = try ledger.grant(
                                    db, member: MemberID(origin: store, serial: 1), account: .main,
                                    to: stores[(hub + 1) % 2], points: 3)
                            }
                        }
                    }
                } catch { failures.add("writer \(hub): \(error)") }
                done.add("writer \(hub)")
            }
        }
        // A store reading the feed while they write: each page must follow on from its watermark.
        let reader = Thread {
            do {
                let db = try HubLedger.open(location, readOnly: true)
                var watermark: UInt64 = 0
                while done.count < 2 || watermark < 4 * perStore {
                    let rows = try db.query(
                        "SELECT feed_seq FROM entries WHERE feed_seq > ? ORDER BY feed_seq LIMIT 50", [.uint(watermark)]
                    )
                    for row in rows {
                        if row.uint(0) != watermark + 1 {
                            failures.add("feed jumped from \(watermark) to \(row.uint(0))")
                            return
                        }
                        watermark += 1
                    }
                    if rows.isEmpty && done.count == 2 { break }
                }
            } catch { failures.add("reader: \(error)") }
            done.add("reader")
        }
        for thread in writers + [reader] { thread.start() }
        let deadline = Date().addingTimeInterval(120)
        while done.count < 3 && Date() < deadline { usleep(10_000) }
        #expect(done.count == 3, "writers and reader finished")
        #expect(failures.all.isEmpty, "\(failures.all)")

        let total = try #require(try setup.scalar("SELECT COUNT(*) FROM entries"))
        let hubEntries = try #require(try setup.scalar("SELECT COUNT(*) FROM entries WHERE origin = 0"))
        #expect(total == Int64(4 * perStore) + hubEntries && hubEntries > 0)
        #expect(try setup.scalar("SELECT MAX(feed_seq) FROM entries") == total, "feed places 1…N, no gaps")
        #expect(try setup.scalar("SELECT MAX(seq) FROM entries WHERE origin = 0") == hubEntries, "hub log 1…K")
        for store in stores {
            let counter = try ledger.counter(setup, member: MemberID(origin: store, serial: 1), account: .main)
            #expect(counter.balance == Int64(perStore - 1) * 10, "store \(store.rawValue)'s member")
        }
    }
}

/// Messages from several threads.
final class Failures: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
    var count: Int { all.count }
}

@Suite struct PostgresAddressTests {
    @Test(arguments: [
        "mysql://u@h/db", "postgres://h/db", "postgres://u@h", "postgres://u@h/", "postgres://u@h/db?x=1",
        "postgres://u@h/db?schema=a-b", "postgres://u@h/db?sslmode=maybe", "sqlite:", "hub.sqlite",
    ])
    func badAddressesAreRefusedWithTheReason(text: String) {
        #expect(throws: HubError.self) { _ = try HubDatabaseLocation(parsing: text) }
    }

    @Test func addressesAreParsedAndThePasswordIsNotPrinted() throws {
        let location = try HubDatabaseLocation(
            parsing: "postgres://hub:secret@db.example:6432/loyalty?schema=north&sslmode=require")
        guard case .postgres(let address) = location else {
            Issue.record("not PostgreSQL")
            return
        }
        #expect(address.host == "db.example" && address.port == 6432 && address.user == "hub")
        #expect(address.password == "secret" && address.database == "loyalty" && address.schema == "north")
        #expect(address.tls == .require)
        #expect(!"\(location)".contains("secret"))
        #expect(
            try HubDatabaseLocation(parsing: "sqlite:/var/lib/hub/hub.sqlite")
                == .sqlite(path: "/var/lib/hub/hub.sqlite"))
    }

    @Test func aServerThatIsNotThereIsAClearError() throws {
        let port = try #require(SocketAddress.freeLoopbackPort())
        let error = #expect(throws: HubError.self) {
            _ = try HubLedger.open(.postgres(try PostgresLocation(url: "postgres://hub@127.0.0.1:\(port)/loyalty")))
        }
        #expect(error?.description.contains("cannot connect to PostgreSQL at postgres://hub@127.0.0.1:\(port)") == true)
    }

    @Test func statementsAreSplitOutsideQuotesAndComments() {
        #expect(
            PostgreSQLConnection.statements("CREATE TABLE a (x TEXT); -- a; comment\nINSERT INTO a VALUES('1;2');\n")
                == ["CREATE TABLE a (x TEXT)", "INSERT INTO a VALUES('1;2')"])
    }
}

@Suite(.enabled(if: HubBackend.postgresURL != nil, "needs LOYALTY_TEST_POSTGRES"))
struct PostgresReconnectTests {
    @Test func aLostConnectionFailsItsTransactionWholeAndTheNextOneReconnects() throws {
        let location = try freshHubLocation(.postgres)
        let db = try HubLedger.open(location)
        let ledger = HubLedger()
        let store = NodeID(1)
        _ = try ledger.enroll(db, name: "s1", partner: "p", key: SigningKeyPair.generate().publicKey)
        let log = SharedDatabaseTests.log(of: store, count: 12)
        _ = try db.transaction { try ledger.merge(db, from: store, entries: Array(log[0..<6])) }
        // An administrator (or a failover) ends the hub's session in the middle of a transaction.
        let admin = try HubLedger.open(location)
        let pid = try #require(try db.scalar("SELECT pg_backend_pid()"))
        #expect(throws: (any Error).self) {
            try db.transaction {
                _ = try ledger.merge(db, from: store, entries: Array(log[6..<9]))
                _ = try admin.scalar("SELECT 1 FROM pg_terminate_backend(CAST(? AS integer))", [.integer(pid)])
                _ = try ledger.merge(db, from: store, entries: Array(log[9..<12]))
            }
        }
        // Nothing of the lost transaction stayed; the next one reconnects and merges all.
        #expect(try admin.scalar("SELECT COUNT(*) FROM entries") == 6)
        #expect(try db.transaction { try ledger.merge(db, from: store, entries: Array(log[6..<12])) } == 12)
        let newPID = try db.scalar("SELECT pg_backend_pid()")
        #expect(newPID != pid)
        #expect(try admin.scalar("SELECT COUNT(*) FROM entries") == 12)
    }
}

@Suite(.enabled(if: HubBackend.postgresURL != nil, "needs LOYALTY_TEST_POSTGRES"))
struct PostgresSchemaUpgradeTests {
    @Test func aVersionFourDatabaseUpgradesAndKeepsItsData() throws {
        let location = try freshHubLocation(.postgres)
        guard case .postgres(let address) = location else { return }
        let ledger = HubLedger()
        let store = NodeID(1)
        let log = SharedDatabaseTests.log(of: store, count: 8)
        do {
            let old = try PostgreSQLConnection(address)
            try HubLedger.postgresMigrator.migrate(old, upTo: 4)
            #expect(try old.schemaVersion() == 4)
            _ = try ledger.enroll(old, name: "s1", partner: "p", key: SigningKeyPair.generate().publicKey)
            // Entries as version 4 stored them (no visits or merges tables yet).
            for (index, entry) in log.prefix(4).enumerated() {
                try old.run(
                    "INSERT INTO entries(origin, seq, feed_seq, hlc, entry, member) VALUES(?, ?, ?, ?, ?, ?)",
                    [
                        .int(1), .uint(entry.sequence), .int(index + 1), .uint(entry.timestamp.rawValue),
                        .blob(entry.encoded), .uint(MemberID(origin: store, serial: 1).rawValue),
                    ])
                if case .registerMember(let record) = entry.operation { try CounterSlots.insertMember(old, record) }
                try CounterSlots.apply(old, entry.effects)
            }
        }
        let db = try HubLedger.open(location)
        #expect(try db.schemaVersion() == HubLedger.postgresMigrator.latestVersion)
        #expect(try db.transaction { try ledger.merge(db, from: store, entries: Array(log[4..<8])) } == 8)
        #expect(try ledger.memberMerges(db).isEmpty)
        #expect(try ledger.counter(db, member: MemberID(origin: store, serial: 1), account: .main).balance == 70)
    }
}

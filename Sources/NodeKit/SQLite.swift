import CSQLite
import CWALBatch

private let transientDestructor = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// A SQLite failure: the result code, SQLite's message and the statement being run.
public struct SQLiteError: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public let sql: String

    public var isConstraintViolation: Bool { code & 0xFF == SQLITE_CONSTRAINT }
    public var description: String { "database error \(code) (\(message)) while running: \(sql)" }
}

/// A value bound to or read from a statement.
public enum SQLValue: Sendable, Equatable, ExpressibleByIntegerLiteral, ExpressibleByStringLiteral,
    ExpressibleByNilLiteral
{
    case null
    case integer(Int64)
    case text(String)
    case blob([UInt8])

    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(stringLiteral value: String) { self = .text(value) }
    public init(nilLiteral: ()) { self = .null }

    /// Unsigned values are stored as their Int64 bit pattern when above Int64.max.
    public static func uint(_ value: UInt64) -> SQLValue { .integer(Int64(bitPattern: value)) }
    public static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }

    /// The integer held (0 for anything else).
    public var integer: Int64 {
        if case .integer(let value) = self { return value }
        return 0
    }
}

/// One result row.
public struct SQLRow: Sendable {
    public let values: [SQLValue]

    public init(values: [SQLValue]) { self.values = values }

    public func int(_ index: Int) -> Int64 {
        if case .integer(let value) = values[index] { return value }
        return 0
    }

    public func uint(_ index: Int) -> UInt64 { UInt64(bitPattern: int(index)) }

    public func text(_ index: Int) -> String {
        if case .text(let value) = values[index] { return value }
        return ""
    }

    public func blob(_ index: Int) -> [UInt8] {
        switch values[index] {
        case .blob(let value): return value
        case .text(let value): return Array(value.utf8)
        default: return []
        }
    }

    public func isNull(_ index: Int) -> Bool { values[index] == .null }
}

/// A SQLite connection with a prepared-statement cache. Not thread-safe: one thread at a time
/// (the `DatabaseWriter` thread, or the thread that opened it before handing it over).
public final class SQLiteConnection: @unchecked Sendable {
    // @unchecked: ownership moves between threads only through DatabaseWriter's lock, never shared.
    private var db: OpaquePointer?
    private var cache: [String: OpaquePointer] = [:]
    /// The statements of SQL written as string literals, found by where the literal's bytes
    /// are: a literal lives in the program's image for as long as the program runs (nothing
    /// here unloads a library), so its address names it, and finding it costs no hash of the
    /// whole text (which was 4 % of the simulator's instructions). Text built at run time is
    /// looked up in `cache` only.
    private var literals = AddressTable<(sql: String, statement: OpaquePointer)>()
    /// Statements prepared, and how many of them are also found by a literal's address.
    var cachedStatements: (all: Int, byLiteral: Int) { (cache.count, literals.count) }
    public let path: String
    /// Whether the database is held in memory and private to this connection.
    let privateInMemory: Bool
    /// Whether this connection writes its WAL through the wal-batch VFS.
    public let batchedWAL: Bool

    /// Settings SQLite takes once per process, before it initializes (the first connection
    /// opened applies them): no memory statistics, which nothing here reads and which cost a
    /// global mutex around every allocation. SQLITE_MISUSE (SQLite already initialized by
    /// other code in the process) leaves SQLite's defaults, which work as well.
    private static let processSettings: Int32 = loyalty_sqlite_disable_memory_statistics()

    /// Opens the database at `path`. With `batchedWAL` the connection writes each commit's WAL
    /// frames to the kernel in one system call instead of two per frame (the wal-batch VFS,
    /// see CWALBatch; a commit of a few purchases writes some 15 frames). Such a connection
    /// must sync the WAL at every commit, since the frames reach the file only then while
    /// other connections may read them as soon as the commit is published: it runs
    /// synchronous=FULL, set here, and refuses a statement that sets anything weaker.
    public init(path: String, readOnly: Bool = false, batchedWAL: Bool = false) throws(SQLiteError) {
        _ = Self.processSettings
        self.path = path
        privateInMemory = Self.isPrivateInMemory(path)
        let flags = readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
        let batched = batchedWAL && !readOnly && !Self.isInMemory(path) && loyalty_wal_batch_register() == SQLITE_OK
        self.batchedWAL = batched
        let uri = path.hasPrefix("file:") ? SQLITE_OPEN_URI : 0
        let rc = sqlite3_open_v2(
            path, &db, flags | uri | SQLITE_OPEN_NOMUTEX, batched ? loyalty_wal_batch_name : nil)
        guard rc == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            db = nil
            throw SQLiteError(code: rc, message: message, sql: "open \(path)")
        }
        sqlite3_busy_timeout(db, 5_000)
        if Self.isMemoryFile(path) {
            // The memdb VFS caps a database at 1 GiB unless told otherwise.
            var limit: Int64 = 1 << 40
            let rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_SIZE_LIMIT, &limit)
            guard rc == SQLITE_OK else { throw error(rc, "set the size limit of \(path)") }
        }
        if batched { try execute("PRAGMA synchronous=FULL") }
    }

    /// Moves a memdb database (see `isMemoryFile`) into a buffer of `bytes` bytes, so that it
    /// grows in place up to that size. Otherwise memdb grows by reallocating its buffer to
    /// twice the size needed, and an allocator that moves a large block to grow it (mimalloc
    /// does; glibc remaps it) copies the whole database each time, into memory the kernel
    /// must first clear. Memory of the buffer not yet written is only reserved, not used.
    /// Connection settings (such as `locking_mode`) are to be set after this call.
    public func reserveMemoryFile(bytes: Int64) throws(SQLiteError) {
        guard Self.isMemoryFile(path) else { return }
        var size: sqlite3_int64 = 0
        guard let current = sqlite3_serialize(db, "main", &size, 0) else {
            throw error(SQLITE_NOMEM, "copy \(path) to reserve memory for it")
        }
        defer { sqlite3_free(current) }
        let capacity = max(bytes, size)
        guard let buffer = sqlite3_malloc64(UInt64(capacity)) else {
            throw error(SQLITE_NOMEM, "reserve \(capacity) bytes for \(path)")
        }
        buffer.copyMemory(from: current, byteCount: Int(size))
        // From here SQLite owns the buffer, and frees it even if this fails.
        let rc = sqlite3_deserialize(
            db, "main", buffer.assumingMemoryBound(to: UInt8.self), size, capacity,
            UInt32(SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE))
        guard rc == SQLITE_OK else { throw error(rc, "reserve memory for \(path)") }
        var limit: Int64 = 1 << 40
        let limitSet = sqlite3_file_control(db, "main", SQLITE_FCNTL_SIZE_LIMIT, &limit)
        guard limitSet == SQLITE_OK else { throw error(limitSet, "set the size limit of \(path)") }
    }

    /// Whether `path` names an in-memory database (no files, so no WAL).
    static func isInMemory(_ path: String) -> Bool {
        path.isEmpty || path == ":memory:" || path.hasPrefix("file::memory:") || isMemoryFile(path)
    }

    /// Whether `path` names an in-memory database no other connection can open: `:memory:`,
    /// or a memdb name without a leading slash. (A `file::memory:` URI may share its cache,
    /// and a memdb name with a slash is shared by every connection that names it.)
    static func isPrivateInMemory(_ path: String) -> Bool {
        path.isEmpty || path == ":memory:" || (isMemoryFile(path) && !path.hasPrefix("file:/"))
    }

    /// Whether `path` is a URI naming a database held by SQLite's memdb VFS: an in-memory
    /// database read and written like a file through the page cache. A large database
    /// commits much faster there than as `:memory:`, whose every commit costs time in
    /// proportion to the whole database (measured with SQLite 3.40: 12 against 30 µs per
    /// one-row commit at 18,000 pages).
    static func isMemoryFile(_ path: String) -> Bool {
        path.hasPrefix("file:") && path.contains("vfs=memdb")
    }

    /// A node's writer connection: batched WAL writes and the durable defaults.
    public static func openDurable(path: String, pageSize: Int? = nil) throws(SQLiteError) -> SQLiteConnection {
        let db = try SQLiteConnection(path: path, batchedWAL: true)
        try db.configureDurable(pageSize: pageSize)
        return db
    }

    /// Refuses, on a batched-WAL connection, a statement that would stop SQLite syncing the
    /// WAL at every commit (checked when a statement is first prepared, not on every run).
    private func checkSynchronous(_ sql: String) throws(SQLiteError) {
        guard batchedWAL else { return }
        let lowered = sql.lowercased()
        guard lowered.contains("synchronous") else { return }
        let normalized = lowered.filter { !$0.isWhitespace }
        for setting in ["synchronous=", "synchronous("] {
            var rest = normalized[...]
            while let found = rest.firstRange(of: setting) {
                let value = rest[found.upperBound...].prefix { $0.isLetter || $0.isNumber }
                guard ["full", "extra", "2", "3"].contains(String(value)) else {
                    throw SQLiteError(
                        code: SQLITE_MISUSE,
                        message: "this connection writes its WAL in batches and must keep synchronous=FULL", sql: sql)
                }
                rest = rest[found.upperBound...]
            }
        }
    }

    /// The durable defaults: WAL, synchronous=FULL, foreign keys on. `pageSize` applies to a
    /// database being created (an existing one keeps the size it was made with).
    public func configureDurable(pageSize: Int? = nil) throws(SQLiteError) {
        if let pageSize { try execute("PRAGMA page_size=\(pageSize)") }
        try execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
    }

    private func error(_ rc: Int32, _ sql: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(db)), sql: sql)
    }

    /// Runs one or more statements without parameters.
    public func execute(_ sql: String) throws(SQLiteError) {
        try checkSynchronous(sql)
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        if rc != SQLITE_OK {
            let text = message.map { String(cString: $0) } ?? "unknown"
            sqlite3_free(message)
            throw SQLiteError(code: rc, message: text, sql: sql)
        }
    }

    private func prepare(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        let address = Self.address(of: sql)
        // The text is compared too; for the same literal that compares the strings' identity.
        if let address, let known = literals.find(address), known.sql == sql { return known.statement }
        let statement = try preparedByText(sql)
        if let address, Self.isInProgramImage(address) || ComposedSQL.isKept(address) {
            literals.set((sql, statement), for: address)
        }
        return statement
    }

    /// Where a string's bytes are, when it holds them contiguously outside the string value.
    static func address(of text: String) -> UInt? {
        guard let address = text.utf8.withContiguousStorageIfAvailable({ UInt(bitPattern: $0.baseAddress) }),
            address != 0
        else { return nil }
        return address
    }

    /// Where a string literal's bytes are, in the program's image; nil for any other string.
    static func literalAddress(_ text: String) -> UInt? {
        address(of: text).flatMap { isInProgramImage($0) ? $0 : nil }
    }

    /// Whether `address` lies in the program or a library loaded when first asked (where
    /// literals are), not on the heap or a stack. A library loaded later is not looked at:
    /// its literals are found by their text, which is only slower.
    private static func isInProgramImage(_ address: UInt) -> Bool {
        programImages.contains { $0.contains(address) }
    }

    private static let programImages: [Range<UInt>] = {
        var capacity = 64
        while true {
            var starts = [UInt](repeating: 0, count: capacity)
            var ends = [UInt](repeating: 0, count: capacity)
            let count = Int(loyalty_loaded_image_ranges(&starts, &ends, Int32(capacity)))
            if count <= capacity { return (0..<count).map { starts[$0]..<ends[$0] } }
            capacity = count + 16
        }
    }()

    private func preparedByText(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        if let statement = cache[sql] { return statement }
        try checkSynchronous(sql)
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw error(rc, sql) }
        cache[sql] = statement
        return statement
    }

    private func bind(_ statement: OpaquePointer, _ arguments: [SQLValue], _ sql: String) throws(SQLiteError) {
        for (offset, value) in arguments.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .integer(let number): rc = sqlite3_bind_int64(statement, index, number)
            case .text(let text):
                // withCString reads a native string's own bytes; passing `text` as a C string
                // would copy it into a new array first.
                rc = text.withCString { sqlite3_bind_text(statement, index, $0, -1, transientDestructor) }
            case .blob(let bytes):
                rc = bytes.withUnsafeBytes {
                    sqlite3_bind_blob(
                        statement, index, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32($0.count),
                        transientDestructor)
                }
            }
            guard rc == SQLITE_OK else { throw error(rc, sql) }
        }
    }

    /// Runs a statement and returns every row.
    @discardableResult
    public func query(_ sql: String, _ arguments: [SQLValue] = []) throws(SQLiteError) -> [SQLRow] {
        try query(prepare(sql), sql, arguments)
    }

    /// Opens and commits write transactions with statements prepared once and held here:
    /// BEGIN and COMMIT are too short to have an address of their own (a string of 15 bytes
    /// or fewer is held inside the string value), so the cache would find them by hashing
    /// their text at every transaction.
    private var transactionStatements: (begin: OpaquePointer?, commit: OpaquePointer?) = (nil, nil)

    func beginTransaction() throws(SQLiteError) {
        // BEGIN IMMEDIATE takes the write lock at once, so that writers queue there instead
        // of failing to upgrade a read. A private in-memory database has no other connection,
        // and a plain BEGIN starts no write until the first write (an idle sync writes nothing).
        let sql = privateInMemory ? "BEGIN" : "BEGIN IMMEDIATE"
        if transactionStatements.begin == nil { transactionStatements.begin = try preparedByText(sql) }
        if let statement = transactionStatements.begin { _ = try query(statement, sql, []) }
    }

    func commitTransaction() throws(SQLiteError) {
        if transactionStatements.commit == nil { transactionStatements.commit = try preparedByText("COMMIT") }
        if let statement = transactionStatements.commit { _ = try query(statement, "COMMIT", []) }
    }

    private func query(_ statement: OpaquePointer, _ sql: String, _ arguments: [SQLValue]) throws(SQLiteError)
        -> [SQLRow]
    {
        defer { sqlite3_reset(statement) }
        // A call that binds every parameter replaces all the last call's values; one that
        // binds fewer starts from cleared bindings, so what it leaves out is NULL.
        if arguments.count < Int(sqlite3_bind_parameter_count(statement)) { sqlite3_clear_bindings(statement) }
        try bind(statement, arguments, sql)
        var rows: [SQLRow] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc, sql) }
            let columns = sqlite3_column_count(statement)
            var values: [SQLValue] = []
            values.reserveCapacity(Int(columns))
            for column in 0..<columns {
                switch sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: values.append(.integer(sqlite3_column_int64(statement, column)))
                case SQLITE_TEXT: values.append(.text(String(cString: sqlite3_column_text(statement, column))))
                case SQLITE_BLOB:
                    let count = Int(sqlite3_column_bytes(statement, column))
                    if let base = sqlite3_column_blob(statement, column) {
                        values.append(.blob(Array(UnsafeRawBufferPointer(start: base, count: count))))
                    } else {
                        values.append(.blob([]))
                    }
                case SQLITE_FLOAT: values.append(.integer(Int64(sqlite3_column_double(statement, column))))
                default: values.append(.null)
                }
            }
            rows.append(SQLRow(values: values))
        }
        return rows
    }

    /// Runs a statement for its effect; returns the number of rows changed.
    @discardableResult
    public func run(_ sql: String, _ arguments: [SQLValue] = []) throws(SQLiteError) -> Int {
        try query(sql, arguments)
        return Int(sqlite3_changes(db))
    }

    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(db) }

    /// The schema version kept in `PRAGMA user_version`.
    public var userVersion: Int64 {
        get throws(SQLiteError) {
            guard let row = try query("PRAGMA user_version", []).first else { return 0 }
            return row.int(0)
        }
    }

    public func close() {
        for statement in cache.values { sqlite3_finalize(statement) }
        cache.removeAll()
        literals.removeAll()
        transactionStatements = (nil, nil)
        sqlite3_close_v2(db)
        db = nil
    }

    deinit { close() }
}

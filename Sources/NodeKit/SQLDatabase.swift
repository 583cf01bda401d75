/// The SQL a database speaks where the two backends differ.
public enum SQLDialect: Sendable, Equatable {
    /// SQLite: the edge's replica and the hub's embedded default.
    case sqlite
    /// PostgreSQL: the hub's production backend.
    case postgres
}

/// A connection the ledgers run their SQL on: SQLite, or (at the hub) PostgreSQL. Statements
/// use `?` placeholders on both; values are integers, text, blobs or NULL. Like a SQLite
/// connection, one is used by one thread at a time.
public protocol SQLDatabase: AnyObject, Sendable {
    var dialect: SQLDialect { get }
    /// Runs a statement and returns every row.
    @discardableResult func query(_ sql: String, _ arguments: [SQLValue]) throws -> [SQLRow]
    /// Runs a statement for its effect; returns the number of rows changed.
    @discardableResult func run(_ sql: String, _ arguments: [SQLValue]) throws -> Int
    /// Runs one or more statements without parameters.
    func execute(_ sql: String) throws
    /// Opens a write transaction holding the lock every writer of this database takes, so
    /// that writers from several processes commit one after another, in the order they
    /// numbered things.
    func beginWrite() throws
    /// Commits the transaction `beginWrite` opened.
    func commitWrite() throws
    /// The schema version the migrator keeps.
    func schemaVersion() throws -> Int64
    func setSchemaVersion(_ version: Int64) throws
}

extension SQLDatabase {
    @discardableResult public func query(_ sql: String) throws -> [SQLRow] { try query(sql, []) }
    @discardableResult public func run(_ sql: String) throws -> Int { try run(sql, []) }

    /// The first column of the first row, as an integer (nil when there is no row or it is NULL).
    public func scalar(_ sql: String, _ arguments: [SQLValue] = []) throws -> Int64? {
        guard let row = try query(sql, arguments).first, !row.isNull(0) else { return nil }
        return row.int(0)
    }

    public func commitWrite() throws { try execute("COMMIT") }

    /// Runs `body` in one write transaction; rolls back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try beginWrite()
        do {
            let result = try body()
            try commitWrite()
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// `GREATEST(a, b)` in this dialect (SQLite's two-argument MAX).
    public func greatest(_ a: String, _ b: String) -> String {
        dialect == .postgres ? "GREATEST(\(a), \(b))" : "MAX(\(a), \(b))"
    }

    /// Inserts `rows` with `statement` (an INSERT whose VALUES clause is the single row
    /// `values`, followed by `suffix`, typically an ON CONFLICT clause). Rows are applied in
    /// order, each as if inserted alone. SQLite runs cached statements of 16 rows, then the
    /// one-row statement for the rest (two statements per insert in the cache); PostgreSQL,
    /// where each statement is a round trip, sends multi-row statements of up to `chunk` rows.
    public func insert(
        _ statement: String, values: String, suffix: String = "", rows: [[SQLValue]], chunk: Int = 500
    ) throws {
        guard !rows.isEmpty else { return }
        switch dialect {
        case .sqlite:
            let wide = 16
            var start = 0
            if rows.count >= wide {
                let sql = ComposedSQL.insert(statement, values: values, suffix: suffix, rows: wide)
                var arguments: [SQLValue] = []
                arguments.reserveCapacity(wide * rows[0].count)
                while rows.count - start >= wide {
                    arguments.removeAll(keepingCapacity: true)
                    for row in rows[start..<start + wide] { arguments.append(contentsOf: row) }
                    try run(sql, arguments)
                    start += wide
                }
            }
            let sql = ComposedSQL.insert(statement, values: values, suffix: suffix, rows: 1)
            for row in rows[start...] { try run(sql, row) }
        case .postgres:
            var start = 0
            while start < rows.count {
                let end = min(start + chunk, rows.count)
                let tuples = Array(repeating: values, count: end - start).joined(separator: ", ")
                try run("\(statement) VALUES \(tuples) \(suffix)", Array(rows[start..<end].joined()))
                start = end
            }
        }
    }
}

extension SQLiteConnection: SQLDatabase {
    public var dialect: SQLDialect { .sqlite }
    public func beginWrite() throws { try beginTransaction() }
    /// A prepared COMMIT, held by the connection (a transaction costs no parsing).
    public func commitWrite() throws { try commitTransaction() }
    public func schemaVersion() throws -> Int64 { try userVersion }
    public func setSchemaVersion(_ version: Int64) throws { try execute("PRAGMA user_version = \(version)") }
}

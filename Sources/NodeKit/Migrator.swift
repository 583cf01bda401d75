/// Versioned schema migrations: each step runs once, in order, in its own transaction, and
/// `PRAGMA user_version` records the last one applied.
public struct Migrator: Sendable {
    public struct Step: Sendable {
        public let version: Int64
        public let sql: String
        /// Work SQL cannot do (decoding stored entries to backfill a column), run after `sql`.
        public let backfill: (@Sendable (any SQLDatabase) throws -> Void)?
        public init(
            version: Int64, sql: String, backfill: (@Sendable (any SQLDatabase) throws -> Void)? = nil
        ) {
            self.version = version
            self.sql = sql
            self.backfill = backfill
        }
    }

    public let steps: [Step]
    public init(steps: [Step]) { self.steps = steps }

    public var latestVersion: Int64 { steps.last?.version ?? 0 }

    /// Brings the database up to the latest version (or to `target`).
    public func migrate(_ db: any SQLDatabase, upTo target: Int64? = nil) throws {
        let current = try db.schemaVersion()
        if current > latestVersion {
            throw SQLiteError(
                code: 0,
                message: "database schema version \(current) is newer than this build knows (\(latestVersion))",
                sql: "migrate")
        }
        for step in steps where step.version > current && step.version <= (target ?? latestVersion) {
            try db.transaction {
                // Read again under the write lock: another process may have migrated meanwhile.
                guard try db.schemaVersion() < step.version else { return }
                try db.execute(step.sql)
                try step.backfill?(db)
                try db.setSchemaVersion(step.version)
            }
        }
    }
}

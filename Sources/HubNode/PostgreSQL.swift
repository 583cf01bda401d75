import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NodeKit
import PostgresNIO

/// Where a PostgreSQL hub database is: parsed from
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME&sslmode=disable|require|verify-full]`.
/// `schema` keeps the hub's tables in a schema of their own (created if missing).
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, require, verifyFull = "verify-full" }

    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var schema: String?
    public var tls: TLSMode

    public init(url: String) throws {
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty, let user = components.user, !user.isEmpty
        else {
            throw HubError(
                "\(url) is not a PostgreSQL address; write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw HubError("the PostgreSQL address \(url) names no database (postgres://USER@HOST:PORT/DATABASE)")
        }
        self.host = host
        port = components.port ?? 5432
        self.user = user
        password = components.password
        self.database = database
        tls = .disable
        for item in components.queryItems ?? [] {
            switch (item.name, item.value) {
            case ("schema", let name?):
                guard !name.isEmpty, name.count <= 63,
                    name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") })
                else { throw HubError("schema \(name) must be 1 to 63 letters, digits or underscores") }
                schema = name.lowercased()
            case ("sslmode", let mode?):
                guard let parsed = TLSMode(rawValue: mode) else {
                    throw HubError("sslmode \(mode) is not one of disable, require, verify-full")
                }
                tls = parsed
            default:
                throw HubError("unknown PostgreSQL address option \(item.name) (known: schema, sslmode)")
            }
        }
    }

    /// The address without its password, for logs.
    public var description: String {
        "postgres://\(user)@\(host):\(port)/\(database)" + (schema.map { "?schema=\($0)" } ?? "")
    }
}

/// A PostgreSQL failure, with the server's message and the statement being run.
public struct PostgresError: Error, CustomStringConvertible {
    public let message: String
    public let sql: String
    public var description: String { "PostgreSQL error (\(message)) while running: \(sql)" }
}

/// One PostgreSQL connection (postgres-nio) used synchronously by one thread at a time, like
/// a SQLite connection: the hub's writer thread, a console reader, a CLI command. Statements
/// keep SQLite's `?` placeholders and are rewritten to `$n` once each. When the server goes
/// away (a restart, a failover, an administrator ending the session), the statement that
/// finds out fails, and the next one connects again: a transaction in progress is lost
/// whole (its caller sees the failure and the store retries), never half-applied.
public final class PostgreSQLConnection: SQLDatabase, @unchecked Sendable {
    // @unchecked: used by one thread at a time; ownership moves as with SQLiteConnection.
    private var connection: PostgresConnection
    private var broken = false
    private let readOnly: Bool
    private let configuration: PostgresConnection.Configuration
    private let logger: Logger
    private var rewritten: [String: String] = [:]
    public let location: PostgresLocation
    public var dialect: SQLDialect { .postgres }

    /// The advisory lock every hub writer holds while it writes (see `beginWrite`).
    static let writerLock: Int64 = 0x6C6F_7961_6C74_79  // "loyalty"

    public init(_ location: PostgresLocation, readOnly: Bool = false, logger: Logger = Logger(label: "postgres"))
        throws
    {
        self.location = location
        self.logger = logger
        self.readOnly = readOnly
        let tls: PostgresConnection.Configuration.TLS
        switch location.tls {
        case .disable: tls = .disable
        case .require, .verifyFull:
            var configuration = TLSConfiguration.makeClientConfiguration()
            if location.tls == .require { configuration.certificateVerification = .none }
            tls = .require(try NIOSSLContext(configuration: configuration))
        }
        configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: tls)
        connection = try Self.connect(configuration, location, logger)
        try prepareSession()
    }

    private static func connect(
        _ configuration: PostgresConnection.Configuration, _ location: PostgresLocation, _ logger: Logger
    ) throws -> PostgresConnection {
        do {
            return try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: configuration, id: 1, logger: logger
            ).wait()
        } catch {
            throw HubError("cannot connect to PostgreSQL at \(location): \(Self.describe(error))")
        }
    }

    /// The session settings every connection needs: the schema, and read-only for readers.
    private func prepareSession() throws {
        if let schema = location.schema {
            if !readOnly { try run("CREATE SCHEMA IF NOT EXISTS \"\(schema)\"") }
            try run("SET search_path TO \"\(schema)\"")
        }
        if readOnly { try run("SET default_transaction_read_only = on") }
    }

    /// Whether a failure means the connection is gone (as opposed to a refused statement).
    static func isConnectionLost(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .serverClosedConnection, .connectionError, .uncleanShutdown, .clientClosedConnection: return true
        case .server:
            // Class 08 (connection exception) and 57P (operator intervention: shutdown, terminated).
            let state = error.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || state.hasPrefix("57P")
        default: return false
        }
    }

    deinit { try? connection.close().wait() }

    /// The server's own words for a failure, without postgres-nio's wrapping.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            return "\(error.code)"
        }
        return "\(error)"
    }

    /// `?` → `$1, $2, …`, outside quoted text.
    private func numbered(_ sql: String) -> String {
        if let done = rewritten[sql] { return done }
        var result = ""
        var count = 0
        var quoted = false
        for character in sql {
            if character == "'" { quoted.toggle() }
            if character == "?" && !quoted {
                count += 1
                result += "$\(count)"
            } else {
                result.append(character)
            }
        }
        rewritten[sql] = result
        return result
    }

    private func send(_ sql: String, _ arguments: [SQLValue]) throws -> PostgresQueryResult {
        var binds = PostgresBindings(capacity: arguments.count)
        for argument in arguments {
            switch argument {
            case .null: binds.appendNull()
            case .integer(let value): binds.append(value)
            case .text(let value): binds.append(value)
            case .blob(let value): binds.append(ByteBuffer(bytes: value))
            }
        }
        if broken || connection.isClosed {
            try? connection.close().wait()
            connection = try Self.connect(configuration, location, logger)
            broken = false
            logger.notice("reconnected to PostgreSQL", metadata: ["database": "\(location)"])
            try prepareSession()
        }
        do {
            return try connection.query(PostgresQuery(unsafeSQL: numbered(sql), binds: binds), logger: logger).wait()
        } catch {
            if Self.isConnectionLost(error) { broken = true }
            throw PostgresError(message: Self.describe(error), sql: sql)
        }
    }

    @discardableResult
    public func query(_ sql: String, _ arguments: [SQLValue]) throws -> [SQLRow] {
        try send(sql, arguments).rows.map { row in
            var values: [SQLValue] = []
            values.reserveCapacity(row.count)
            for cell in row { values.append(try Self.value(of: cell, sql: sql)) }
            return SQLRow(values: values)
        }
    }

    private static func value(of cell: PostgresCell, sql: String) throws -> SQLValue {
        guard let bytes = cell.bytes else { return .null }
        do {
            switch cell.dataType {
            case .int2, .int4, .int8: return .integer(try cell.decode(Int64.self))
            case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
            case .bytea: return .blob(Array(bytes.readableBytesView))
            case .numeric:
                let number = NSDecimalNumber(decimal: try cell.decode(Decimal.self))
                return .integer(number.int64Value)
            case .float4, .float8: return .integer(Int64(try cell.decode(Double.self)))
            default: return .text(try cell.decode(String.self))
            }
        } catch {
            throw PostgresError(message: "column \(cell.columnName) of type \(cell.dataType) cannot be read", sql: sql)
        }
    }

    @discardableResult
    public func run(_ sql: String, _ arguments: [SQLValue]) throws -> Int {
        try send(sql, arguments).metadata.rows ?? 0
    }

    /// Runs statements separated by `;` (outside quotes and `--` comments), one at a time:
    /// postgres-nio speaks only the extended protocol, one statement per query.
    public func execute(_ sql: String) throws {
        for statement in Self.statements(sql) { try run(statement, []) }
    }

    static func statements(_ sql: String) -> [String] {
        var statements: [String] = []
        var current = ""
        var quoted = false
        var comment = false
        var previous: Character = " "
        for character in sql {
            if comment {
                if character == "\n" { comment = false }
                previous = character
                continue
            }
            if !quoted && character == "-" && previous == "-" {
                current.removeLast()
                comment = true
                continue
            }
            if character == "'" { quoted.toggle() }
            if character == ";" && !quoted {
                statements.append(current)
                current = ""
            } else {
                current.append(character)
            }
            previous = character
        }
        statements.append(current)
        return statements.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// Every hub process writing to this database holds one advisory lock for the whole
    /// transaction: feed places and the hub's own sequence numbers are taken under it, so
    /// they are gap-free and committed in order even with several hubs on one database.
    public func beginWrite() throws {
        try run("BEGIN", [])
        try run("SELECT pg_advisory_xact_lock(?)", [.integer(Self.writerLock)])
    }

    public func schemaVersion() throws -> Int64 {
        let exists = try scalar(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'schema_version'")
        guard exists != nil else { return 0 }
        return try scalar("SELECT MAX(version) FROM schema_version") ?? 0
    }

    public func setSchemaVersion(_ version: Int64) throws {
        try run("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)", [])
        try run("DELETE FROM schema_version", [])
        try run("INSERT INTO schema_version(version) VALUES(?)", [.integer(version)])
    }
}

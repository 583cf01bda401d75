import NodeKit
import SyncProtocol

/// Who an API token speaks for: the coalition operator (everything) or one partner (its own
/// stores, members' activity at them, its own reports).
public enum ApiRole: Sendable, Equatable, CustomStringConvertible {
    case coalitionOperator
    case partner(String)

    public var description: String {
        switch self {
        case .coalitionOperator: "operator"
        case .partner(let name): "partner \(name)"
        }
    }

    /// The partner this role is limited to (nil: the operator sees every partner).
    public var partnerScope: String? {
        if case .partner(let name) = self { return name }
        return nil
    }
}

/// A token as listed to the operator (never the token itself: only its hash is stored).
public struct ApiTokenRecord: Sendable, Equatable {
    public var label: String
    public var role: ApiRole
    public var createdMilliseconds: UInt64
    public var revoked: Bool
}

extension HubLedger {
    static let tokenMigration = Migrator.Step(
        version: 3,
        sql: """
            -- Operator and partner API tokens, stored as BLAKE2b-256 hashes of the token.
            CREATE TABLE api_tokens (
                hash BLOB PRIMARY KEY,
                label TEXT NOT NULL UNIQUE,
                partner TEXT,
                created_ms INTEGER NOT NULL,
                revoked_ms INTEGER
            ) WITHOUT ROWID;
            """)

    /// Entries carry the member they concern, indexed, for member history.
    static let memberColumnMigration = Migrator.Step(
        version: 4,
        sql: """
            ALTER TABLE entries ADD COLUMN member INTEGER;
            CREATE INDEX entries_member ON entries(member, hlc) WHERE member IS NOT NULL;
            """,
        backfill: { db in
            for row in try db.query("SELECT origin, seq, entry FROM entries") {
                guard let member = try LogEntry(decoding: row.blob(2)).operation.member else { continue }
                try db.run(
                    "UPDATE entries SET member = ? WHERE origin = ? AND seq = ?",
                    [.uint(member.rawValue), row.values[0], row.values[1]])
            }
        })

    static let tokenPrefix = "lyt_"

    static func tokenHash(_ token: String) -> [UInt8] { Sodium.hash([Array("api-token".utf8), Array(token.utf8)]) }

    /// Creates a token for `role` and returns it; it is shown once and stored only hashed.
    public func createToken(_ db: any SQLDatabase, label: String, role: ApiRole) throws -> String {
        guard !label.isEmpty, label.count <= 64, label.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw HubError("a token label is 1 to 64 ASCII characters without spaces")
        }
        if case .partner(let partner) = role,
            try db.scalar("SELECT 1 FROM stores WHERE partner = ? LIMIT 1", [.text(partner)]) == nil
        {
            throw HubError("no store of partner \(partner) is enrolled; enroll one first (hub store enroll)")
        }
        if try db.scalar("SELECT 1 FROM api_tokens WHERE label = ?", [.text(label)]) != nil {
            throw HubError("a token labelled \(label) exists already; revoke it or choose another label")
        }
        let token =
            Self.tokenPrefix
            + Sodium.randomBytes(24).map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
            .joined()
        try db.run(
            "INSERT INTO api_tokens(hash, label, partner, created_ms) VALUES(?, ?, ?, ?)",
            [
                .blob(Self.tokenHash(token)), .text(label), role.partnerScope.map { .text($0) } ?? .null,
                .uint(wallClockMilliseconds()),
            ])
        return token
    }

    /// The role of a presented token, or nil when it is unknown or revoked.
    public func role(_ db: any SQLDatabase, token: String) throws -> ApiRole? {
        guard token.hasPrefix(Self.tokenPrefix), token.count <= 128 else { return nil }
        guard
            let row = try db.query(
                "SELECT partner FROM api_tokens WHERE hash = ? AND revoked_ms IS NULL", [.blob(Self.tokenHash(token))]
            ).first
        else { return nil }
        return row.isNull(0) ? .coalitionOperator : .partner(row.text(0))
    }

    public func tokens(_ db: any SQLDatabase) throws -> [ApiTokenRecord] {
        try db.query("SELECT label, partner, created_ms, revoked_ms FROM api_tokens ORDER BY created_ms, label").map {
            ApiTokenRecord(
                label: $0.text(0), role: $0.isNull(1) ? .coalitionOperator : .partner($0.text(1)),
                createdMilliseconds: $0.uint(2), revoked: !$0.isNull(3))
        }
    }

    public func revokeToken(_ db: any SQLDatabase, label: String) throws {
        guard
            try db.run(
                "UPDATE api_tokens SET revoked_ms = ? WHERE label = ? AND revoked_ms IS NULL",
                [.uint(wallClockMilliseconds()), .text(label)]) > 0
        else { throw HubError("no live token labelled \(label)") }
    }
}

extension Operation {
    /// The member an operation concerns (nil for none).
    public var member: MemberID? {
        switch self {
        case .registerMember(let record): record.id
        case .purchase(let purchase): purchase.member
        case .refund(let refund): refund.member
        case .promoCredit(let member, _, _), .expiry(let member, _, _), .rightsMove(let member, _, _, _): member
        case .memberMerge(let merge): merge.survivor
        }
    }
}

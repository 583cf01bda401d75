import Foundation
import NodeKit
import SyncProtocol

/// The rules this store runs: the latest signed document from the hub, or, until one has
/// arrived, the store's own configuration. Read on the writer thread, replaced on the loop.
public final class ActiveRules: @unchecked Sendable {
    // @unchecked: every mutable field is read and written under `lock`.
    private let lock = NSLock()
    private var document: RulesDocument?
    private var currentPhoneKey: SecretBytes?
    /// The partner this store belongs to, which selects its economics in the document.
    public let partner: String?
    private let fallbackRules: PartnerRules
    private let fallbackPolicy: OfflinePolicy
    /// The key used before the first rules arrived (derived from the hub's public key);
    /// hashes made with it stay findable.
    private let provisionalPhoneKey: SecretBytes

    /// Rights placement days before the hub's rules say (tests and the simulator set it).
    private let fallbackPlacementDays: UInt64

    public init(
        partner: String?, rules: PartnerRules, policy: OfflinePolicy, provisionalPhoneKey: SecretBytes,
        placementDays: UInt64 = 0
    ) {
        fallbackPlacementDays = placementDays
        self.partner = partner
        fallbackRules = rules
        fallbackPolicy = policy
        self.provisionalPhoneKey = provisionalPhoneKey
    }

    public var version: UInt64 { lock.withLock { document?.version ?? 0 } }
    public var partnerRules: PartnerRules { lock.withLock { document?.partner(partner) ?? fallbackRules } }
    public var policy: OfflinePolicy { lock.withLock { document?.offline ?? fallbackPolicy } }
    /// Days a store keeps the rights of members whose latest purchase was here (0: none).
    public var placementDays: UInt64 { lock.withLock { document?.placementDays ?? fallbackPlacementDays } }
    /// Points a purchase earns here now (partner accrual, the member's tier, running campaigns).
    public func pointsEarned(paidMinor: UInt64, at milliseconds: UInt64, vip: Bool = false) -> UInt64 {
        lock.withLock {
            document?.pointsEarned(partner: partner, paidMinor: paidMinor, at: milliseconds, vip: vip)
                ?? fallbackRules.pointsEarned(paidMinor: paidMinor)
        }
    }

    /// The programme's calendar month of a time (UTC until rules name a time zone).
    public func month(of milliseconds: UInt64) -> UInt32 {
        lock.withLock {
            document?.month(of: milliseconds) ?? RulesDocument.month(ofDay: Int64(milliseconds / 86_400_000))
        }
    }

    /// Whether last month's spend makes a member VIP this month.
    public func isVIP(lastMonthSpend spend: UInt64) -> Bool {
        lock.withLock { document?.isVIP(lastMonthSpend: spend) ?? false }
    }

    /// Welcome and referral bonuses; none until the hub's rules set them.
    public var bonuses: (welcome: UInt64, referral: UInt64) {
        lock.withLock { (document?.welcomeBonus ?? 0, document?.referralBonus ?? 0) }
    }

    /// The key new phone hashes are made with, then the others a stored hash may use.
    var phoneKeys: [SecretBytes] {
        lock.withLock { [currentPhoneKey, provisionalPhoneKey].compactMap { $0 } }
    }

    public func install(_ newDocument: RulesDocument) {
        var key = newDocument.phoneKey
        let secret = SecretBytes(consuming: &key)
        lock.withLock {
            guard newDocument.version > (document?.version ?? 0) else { return }
            var stored = newDocument
            stored.phoneKey = []
            document = stored
            currentPhoneKey = secret
        }
    }
}

extension EdgeLedger {
    /// Verifies a signed rules document from the hub, refuses one that is not newer than
    /// what this store runs, and stores it; the caller installs it.
    public func storeRules(_ db: any SQLDatabase, signed: [UInt8], hubKey: PublicKey) throws -> RulesDocument {
        let document = try RulesDocument.verify(signed, hubKey: hubKey)
        let current = UInt64(try db.scalar("SELECT COALESCE(MAX(version), 0) FROM rules") ?? 0)
        guard document.version > current else {
            throw RulesDocument.Failure.invalid("version \(document.version) is not newer than \(current)")
        }
        try db.run("INSERT INTO rules(version, document) VALUES(?, ?)", [.uint(document.version), .blob(signed)])
        return document
    }

    /// The newest stored rules, verified again (a tampered database is not trusted).
    public static func loadRules(_ db: any SQLDatabase, hubKey: PublicKey) throws -> RulesDocument? {
        guard let row = try db.query("SELECT document FROM rules ORDER BY version DESC LIMIT 1").first else {
            return nil
        }
        return try RulesDocument.verify(row.blob(0), hubKey: hubKey)
    }
}

import NodeKit
import SyncProtocol

/// A merge of two member records, as the hub's audit keeps it.
public struct MemberMergeRecord: Sendable, Equatable {
    public var survivor: MemberID
    public var merged: MemberID
    public var mergedAtMilliseconds: UInt64
    /// The welcome bonus the merged record was paid, and how much of it was taken back.
    public var bonus: UInt64
    public var reversed: UInt64
    /// Points moved to the survivor so far (main account).
    public var moved: UInt64
}

extension HubLedger {
    /// Statements for 1, 4, 16 and 64 members (a chunk is padded to the next size), so only
    /// four are ever prepared, and a push touching one member (most do) costs one key lookup,
    /// not a 64-value IN list. The lookup is in `member_merges`, written with every merge
    /// (`members.merged_into` is set in the same transaction): a few rows that stay in
    /// cache, where the member table's own key would be a cold read per push in a large
    /// programme.
    private static let mergedAmongSizes = [1, 4, 16, 64]
    private static let mergedAmongSQL = mergedAmongSizes.map { size in
        "SELECT merged, survivor FROM member_merges WHERE merged IN ("
            + Array(repeating: "?", count: size).joined(separator: ", ") + ") ORDER BY merged"
    }

    /// Member merge after a merge of entries. A registration whose phone hash another
    /// record has (the same person registered at two stores, both offline) merges the two:
    /// the earlier registration survives, the other's cards name the survivor from now on
    /// (at the hub, and at every store once the audit entry reaches it), and the points the
    /// hub holds for the merged record move to the survivor, less a welcome bonus paid twice.
    /// Points of the merged record that reach the hub later (stores hand rights back at their
    /// next sync) move the same way, each move a hub `memberMerge` entry.
    func mergeMembers(_ db: any SQLDatabase, after entries: [LogEntry]) throws {
        // The hub gains a member's rights only when a store hands them over.
        var touched = Set<MemberID>()
        for entry in entries {
            // A store's hand-back, or an online sale that hands back what it leaves.
            for effect in entry.effects where effect.slot.kind == .moved && effect.slot.to == .hub {
                touched.insert(effect.member)
            }
            guard case .registerMember(let record) = entry.operation, !record.phoneHash.isEmpty else { continue }
            guard
                let other = try db.query(
                    """
                    SELECT id, registered_hlc FROM members
                    WHERE phone_hash = ? AND id != ? AND merged_into IS NULL ORDER BY registered_hlc, id LIMIT 1
                    """, [.blob(record.phoneHash), .uint(record.id.rawValue)]
                ).first,
                try db.scalar("SELECT merged_into FROM members WHERE id = ?", [.uint(record.id.rawValue)]) == nil
            else { continue }
            let otherID = MemberID(rawValue: other.uint(0))
            let recordFirst =
                (record.registeredAt.rawValue, record.id.rawValue) < (other.uint(1), otherID.rawValue)
            let (survivor, merged) = recordFirst ? (record.id, otherID) : (otherID, record.id)
            try db.run(
                "UPDATE members SET merged_into = ? WHERE id = ?", [.uint(survivor.rawValue), .uint(merged.rawValue)])
            try db.run(
                "INSERT INTO member_merges(merged, survivor, merged_ms, bonus) VALUES(?, ?, ?, ?)",
                [
                    .uint(merged.rawValue), .uint(survivor.rawValue), .uint(now()),
                    .uint(try welcomeBonusPaid(db, to: merged)),
                ])
            // Stores holding either record hold both from the audit entry on.
            try unionScope(
                db, survivor, merged, from: try nextFeedSequence(db))
            // The audit entry, which carries the merge to every store, and the first move.
            try moveMergedPoints(db, merged: merged, survivor: survivor, always: true)
            touched.remove(merged)
        }
        // Points of merged records that reached the hub with this push: found with one
        // statement per 64 members touched.
        let members = touched.sorted()
        var start = 0
        while start < members.count {
            let chunk = Array(members[start..<min(start + 64, members.count)])
            start += 64
            let size = Self.mergedAmongSizes.firstIndex { $0 >= chunk.count } ?? Self.mergedAmongSizes.count - 1
            let padding = Self.mergedAmongSizes[size] - chunk.count
            let padded = chunk + Array(repeating: chunk[chunk.count - 1], count: padding)
            let rows = try db.query(Self.mergedAmongSQL[size], padded.map { .uint($0.rawValue) })
            for row in rows {
                try moveMergedPoints(
                    db, merged: MemberID(rawValue: row.uint(0)), survivor: MemberID(rawValue: row.uint(1)))
            }
        }
    }

    /// The welcome bonus the registration of `member` paid (its own earned slot in that entry,
    /// at most the rules' welcome bonus: a referral bonus is not a duplicate).
    private func welcomeBonusPaid(_ db: any SQLDatabase, to member: MemberID) throws -> UInt64 {
        let welcome = try currentRules(db)?.welcomeBonus ?? 0
        guard welcome > 0 else { return 0 }
        for row in try db.query(
            "SELECT entry FROM entries WHERE member = ? ORDER BY hlc LIMIT 16", [.uint(member.rawValue)])
        {
            let entry = try LogEntry(decoding: row.blob(0))
            guard case .registerMember(let record) = entry.operation, record.id == member else { continue }
            let paid = entry.effects.filter { $0.member == member && $0.slot.kind == .earned }.map(\.value).max() ?? 0
            return min(welcome, paid)
        }
        return 0
    }

    /// Moves what the hub holds of `merged`'s points to `survivor`, one entry per account
    /// with points (and, with `always`, an entry even when there is nothing to move yet).
    private func moveMergedPoints(_ db: any SQLDatabase, merged: MemberID, survivor: MemberID, always: Bool = false)
        throws
    {
        guard
            let audit = try db.query(
                "SELECT bonus, reversed FROM member_merges WHERE merged = ?", [.uint(merged.rawValue)]
            ).first
        else { return }
        var owed = audit.uint(0) - min(audit.uint(0), audit.uint(1))
        var wrote = false
        for account in Account.allCases {
            var from = try counter(db, member: merged, account: account)
            let held = from.rights(.hub)
            guard held > 0 || (always && account == .main && !wrote) else { continue }
            let taking = UInt64(max(0, held))
            let reversed = account == .main ? min(owed, taking) : 0
            let credited = taking - reversed
            var effects: [SlotWrite] = []
            if taking > 0 {
                let (slot, value) = try from.debit(at: .hub, taking)
                effects.append(SlotWrite(member: merged, account: account, slot: slot, value: value))
            }
            if credited > 0 {
                var to = try counter(db, member: survivor, account: account)
                let (slot, value) = try to.earn(at: .hub, credited)
                effects.append(SlotWrite(member: survivor, account: account, slot: slot, value: value))
            }
            _ = try appendHubEntry(
                db,
                operation: .memberMerge(
                    MemberMerge(
                        survivor: survivor, merged: merged, account: account, points: credited, reversed: reversed)),
                effects: effects)
            wrote = true
            if account == .main {
                owed -= reversed
                try db.run(
                    "UPDATE member_merges SET reversed = reversed + ?, moved = moved + ? WHERE merged = ?",
                    [.uint(reversed), .uint(credited), .uint(merged.rawValue)])
            }
        }
    }

    /// Every merge, newest first.
    public func memberMerges(_ db: any SQLDatabase) throws -> [MemberMergeRecord] {
        try db.query(
            "SELECT survivor, merged, merged_ms, bonus, reversed, moved FROM member_merges ORDER BY merged_ms DESC"
        ).map {
            MemberMergeRecord(
                survivor: MemberID(rawValue: $0.uint(0)), merged: MemberID(rawValue: $0.uint(1)),
                mergedAtMilliseconds: $0.uint(2), bonus: $0.uint(3), reversed: $0.uint(4), moved: $0.uint(5))
        }
    }

    /// The record a member id now stands for: its survivor when it was merged.
    public func survivor(_ db: any SQLDatabase, of member: MemberID) throws -> MemberID {
        guard
            let survivor = try db.scalar(
                "SELECT merged_into FROM members WHERE id = ? AND merged_into IS NOT NULL", [.uint(member.rawValue)])
        else { return member }
        return MemberID(rawValue: UInt64(bitPattern: survivor))
    }
}

/// Which members' changes the hub serves each store. With the whole feed every replica
/// holds every member; with partner groups a store holds the members of its group (those
/// registered or served at a store of a partner in the group) and fetches any other member
/// from the hub when they first show up at its counter.
public struct FeedScope: Sendable, Equatable {
    /// Each store receives only the members of its partner group.
    public var byPartnerGroup: Bool
    /// Named groups of partners; a partner that is in no group is a group of its own.
    public var groups: [String: [String]]

    public init(byPartnerGroup: Bool = false, groups: [String: [String]] = [:]) {
        self.byPartnerGroup = byPartnerGroup
        self.groups = groups.mapValues { Array(Set($0)).sorted() }
    }

    /// The whole feed to every store.
    public static let all = FeedScope()

    /// The partners whose members a store of `partner` holds (itself included), sorted.
    public func partners(inGroupOf partner: String) -> [String] {
        for members in groups.values where members.contains(partner) { return Array(Set(members)).sorted() }
        return [partner]
    }

    /// Each partner in at most one group, names of sane length.
    func validate() throws(RulesDocument.Failure) {
        var seen: [String: String] = [:]
        for (name, partners) in groups.sorted(by: { $0.key < $1.key }) {
            guard !name.isEmpty, name.utf8.count <= 128 else {
                throw .invalid("partner group names are 1 to 128 bytes")
            }
            guard !partners.isEmpty else { throw .invalid("partner group \(name) has no partners") }
            for partner in partners {
                guard !partner.isEmpty, partner.utf8.count <= 128 else {
                    throw .invalid("partner group \(name): partner names are 1 to 128 bytes")
                }
                if let other = seen[partner], other != name {
                    throw .invalid("partner \(partner) is in two groups (\(other) and \(name))")
                }
                seen[partner] = name
            }
        }
    }

    func encode(into writer: inout ByteWriter) {
        writer.write(byPartnerGroup)
        writer.write(UInt32(groups.count))
        for (name, partners) in groups.sorted(by: { $0.key < $1.key }) {
            writer.writeString(name)
            writer.write(UInt32(partners.count))
            for partner in partners.sorted() { writer.writeString(partner) }
        }
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> FeedScope {
        let byGroup = try reader.readBool()
        var groups: [String: [String]] = [:]
        for _ in 0..<(try reader.readCount(field: "partner groups", limit: 1024)) {
            let name = try reader.readString(field: "partner group", limit: 128)
            var partners: [String] = []
            for _ in 0..<(try reader.readCount(field: "group partners", limit: 4096)) {
                partners.append(try reader.readString(field: "partner", limit: 128))
            }
            groups[name] = partners
        }
        return FeedScope(byPartnerGroup: byGroup, groups: groups)
    }
}

/// A member as the hub holds them, for a store whose replica does not: the registration,
/// the record it was merged into (if any), and every counter slot's current value. Slots
/// merge by maximum, so applying a snapshot never lowers what a store already knows.
public struct MemberSnapshot: Sendable, Equatable {
    public var record: MemberRecord
    public var mergedInto: MemberID?
    public var slots: [SlotWrite]

    public init(record: MemberRecord, mergedInto: MemberID? = nil, slots: [SlotWrite]) {
        self.record = record
        self.mergedInto = mergedInto
        self.slots = slots
    }

    /// At most this many slots travel in one snapshot (a member's slots: two accounts, a few
    /// per store that served them).
    public static let maxSlots = 4096

    func encode(into writer: inout ByteWriter) {
        record.encode(into: &writer)
        writer.write(mergedInto?.rawValue ?? 0)
        writer.write(UInt32(slots.count))
        for slot in slots { slot.encode(into: &writer) }
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> MemberSnapshot {
        let record = try MemberRecord.decode(from: &reader)
        let merged = try reader.readUInt64()
        var slots: [SlotWrite] = []
        for _ in 0..<(try reader.readCount(field: "snapshot slots", limit: maxSlots)) {
            slots.append(try SlotWrite.decode(from: &reader))
        }
        for slot in slots where slot.member != record.id {
            throw .invalidValue(field: "snapshot slot", detail: "names member \(slot.member), not \(record.id)")
        }
        return MemberSnapshot(record: record, mergedInto: merged == 0 ? nil : MemberID(rawValue: merged), slots: slots)
    }
}

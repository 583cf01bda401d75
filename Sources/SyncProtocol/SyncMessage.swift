/// The sync protocol version spoken by this build. Bound into the channel handshake too.
public let syncProtocolVersion: UInt16 = 1

/// The wire format of sync messages: a different major version cannot be read; a newer
/// minor version only adds message types or trailing fields a reader may skip.
public enum WireVersion {
    public static let major: UInt8 = 1
    /// 1.1 added `telemetry`; a store sends it only to a hub whose messages say 1.1 or later.
    /// 1.2 added the `memberMerge` log operation, which a hub writes into the feed when it
    /// merges two records of one person: stores are upgraded before the hub.
    /// 1.3 added partner-group feeds: `changes` with member snapshots (its own message tag),
    /// and `memberLookup`/`memberFound` to fetch a member the store does not hold; a hub sends
    /// them only to a store whose messages say 1.3 or later.
    public static let minor: UInt8 = 3
    /// The largest encoded message (the channel's frame limit).
    public static let maxMessageBytes = 1 << 20
}

/// An entry as the hub serves it: its place in the hub's feed, then the entry.
public struct FeedEntry: Sendable, Equatable {
    public var feedSequence: UInt64
    public var entry: LogEntry
    public init(feedSequence: UInt64, entry: LogEntry) {
        self.feedSequence = feedSequence
        self.entry = entry
    }
}

/// Counters a store reports about itself through its sync session, for the operator's
/// metrics and dashboard. Counts since the store process started, except where noted.
public struct EdgeTelemetry: Sendable, Equatable {
    /// Operations written here that the hub has not acknowledged yet.
    public var unsyncedOperations: UInt64
    /// Database jobs queued or running on the store's writer thread.
    public var writerQueueDepth: UInt64
    /// Time spent without a hub session since the process started.
    public var offlineMilliseconds: UInt64
    /// Redemptions refused for lack of points or rights.
    public var redemptionsRefused: UInt64
    /// Points redeemed beyond held rights under the offline policy, ever (from the database).
    public var uncoveredPoints: UInt64
    public var uptimeMilliseconds: UInt64

    public init(
        unsyncedOperations: UInt64 = 0, writerQueueDepth: UInt64 = 0, offlineMilliseconds: UInt64 = 0,
        redemptionsRefused: UInt64 = 0, uncoveredPoints: UInt64 = 0, uptimeMilliseconds: UInt64 = 0
    ) {
        self.unsyncedOperations = unsyncedOperations
        self.writerQueueDepth = writerQueueDepth
        self.offlineMilliseconds = offlineMilliseconds
        self.redemptionsRefused = redemptionsRefused
        self.uncoveredPoints = uncoveredPoints
        self.uptimeMilliseconds = uptimeMilliseconds
    }
}

/// Error codes a peer sends before it ends a session.
public enum SyncErrorCode: UInt16, Sendable {
    case malformed = 1
    case refusedEntry = 2
    case unsupportedVersion = 3
    case internalError = 4
    case unexpected = 5
}

/// The messages of an edge–hub session, carried inside encrypted channel frames.
public enum SyncMessage: Sendable, Equatable {
    /// Edge → hub: who I am and how far I have pulled the hub's feed.
    case hello(version: UInt16, node: NodeID, feedWatermark: UInt64, rulesVersion: UInt64)
    /// Hub → edge: the highest entry of the edge's own log the hub already holds.
    case welcome(version: UInt16, originHighWater: UInt64)
    /// Edge → hub: entries of the edge's own log, in order.
    case push([LogEntry])
    /// Hub → edge: every entry of the edge's log up to `upTo` is durable at the hub.
    case ack(upTo: UInt64)
    /// Edge → hub: send me the feed after `after`.
    case pull(after: UInt64, limit: UInt32)
    /// Hub → edge: feed entries after the requested watermark; `upTo` is the new watermark.
    /// `snapshots` is nil for the whole feed; for a partner-group feed (wire 1.3) it holds the
    /// members who joined the store's group within this batch (their earlier entries are not
    /// sent), and entries of one origin may skip numbers (other groups' members).
    case changes(entries: [FeedEntry], upTo: UInt64, more: Bool, snapshots: [MemberSnapshot]? = nil)
    /// Edge → hub: hand me `points` redemption rights for this member's account.
    case rightsRequest(requestID: UInt32, member: MemberID, account: Account, points: UInt64)
    /// Hub → edge: rights granted (possibly fewer than asked), with the hub's move entry.
    case rightsGrant(requestID: UInt32, granted: UInt64, entry: LogEntry?)
    case error(code: SyncErrorCode, message: String)
    /// Hub → edge: the coalition's rules document at `version` (newer than the edge's).
    case rules(version: UInt64, document: [UInt8])
    /// Edge → hub: credit this promo code to the member (codes are single-use coalition-wide).
    case promoRequest(requestID: UInt32, member: MemberID, code: String)
    /// Hub → edge: the points credited and the hub's entry raising the member's promo
    /// account, or why not (`refusal` set, no entry).
    case promoResult(requestID: UInt32, points: UInt64, entry: LogEntry?, refusal: String?)
    /// Edge → hub (wire 1.1): the store's own counters.
    case telemetry(EdgeTelemetry)
    /// Edge → hub (wire 1.3): a card or phone (keyed hashes, one per phone key in force) the
    /// store does not know; the hub answers with `memberFound` and serves the member from now on.
    case memberLookup(requestID: UInt32, card: String, phoneHashes: [[UInt8]])
    /// Hub → edge (wire 1.3): the member found (and the record it was merged into), or nothing.
    case memberFound(requestID: UInt32, snapshots: [MemberSnapshot])

    /// The minor wire version a peer wrote `bytes` with (nil when too short to say).
    public static func minorVersion(of bytes: [UInt8]) -> UInt8? { bytes.count >= 2 ? bytes[1] : nil }

    public static let maxRulesBytes = 256 * 1024

    public static let maxBatch = 512
    /// Member snapshots in one `changes` message (a hub sends far fewer, but the members one
    /// push brought into a group travel together).
    public static let maxSnapshots = 1024

    public var encoded: [UInt8] {
        var writer = ByteWriter(capacity: 256)
        writer.write(WireVersion.major)
        writer.write(WireVersion.minor)
        switch self {
        case .hello(let version, let node, let watermark, let rulesVersion):
            writer.write(UInt8(1))
            writer.write(version)
            writer.write(node.rawValue)
            writer.write(watermark)
            writer.write(rulesVersion)
        case .welcome(let version, let high):
            writer.write(UInt8(2))
            writer.write(version)
            writer.write(high)
        case .push(let entries):
            writer.write(UInt8(3))
            writer.write(UInt32(entries.count))
            for entry in entries { entry.encode(into: &writer) }
        case .ack(let upTo):
            writer.write(UInt8(4))
            writer.write(upTo)
        case .pull(let after, let limit):
            writer.write(UInt8(5))
            writer.write(after)
            writer.write(limit)
        case .changes(let entries, let upTo, let more, let snapshots):
            // A partner-group feed is its own message type (1.3), so no reader can take one
            // for the whole feed.
            writer.write(UInt8(snapshots == nil ? 6 : 16))
            writer.write(UInt32(entries.count))
            for feed in entries {
                writer.write(feed.feedSequence)
                feed.entry.encode(into: &writer)
            }
            writer.write(upTo)
            writer.write(more)
            if let snapshots {
                writer.write(UInt32(snapshots.count))
                for snapshot in snapshots { snapshot.encode(into: &writer) }
            }
        case .rightsRequest(let requestID, let member, let account, let points):
            writer.write(UInt8(7))
            writer.write(requestID)
            writer.write(member.rawValue)
            writer.write(account.rawValue)
            writer.write(points)
        case .rightsGrant(let requestID, let granted, let entry):
            writer.write(UInt8(8))
            writer.write(requestID)
            writer.write(granted)
            writer.write(entry != nil)
            entry?.encode(into: &writer)
        case .error(let code, let message):
            writer.write(UInt8(9))
            writer.write(code.rawValue)
            writer.writeString(message)
        case .rules(let version, let document):
            writer.write(UInt8(10))
            writer.write(version)
            writer.writeBytes(document)
        case .promoRequest(let requestID, let member, let code):
            writer.write(UInt8(11))
            writer.write(requestID)
            writer.write(member.rawValue)
            writer.writeString(code)
        case .promoResult(let requestID, let points, let entry, let refusal):
            writer.write(UInt8(12))
            writer.write(requestID)
            writer.write(points)
            writer.write(entry != nil)
            entry?.encode(into: &writer)
            writer.writeString(refusal ?? "")
        case .telemetry(let counters):
            writer.write(UInt8(13))
            for value in [
                counters.unsyncedOperations, counters.writerQueueDepth, counters.offlineMilliseconds,
                counters.redemptionsRefused, counters.uncoveredPoints, counters.uptimeMilliseconds,
            ] {
                writer.write(value)
            }
        case .memberLookup(let requestID, let card, let hashes):
            writer.write(UInt8(14))
            writer.write(requestID)
            writer.writeString(card)
            writer.write(UInt32(hashes.count))
            for hash in hashes { writer.writeBytes(hash) }
        case .memberFound(let requestID, let snapshots):
            writer.write(UInt8(15))
            writer.write(requestID)
            writer.write(UInt32(snapshots.count))
            for snapshot in snapshots { snapshot.encode(into: &writer) }
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(WireError) {
        guard bytes.count <= WireVersion.maxMessageBytes else {
            throw .frameTooLarge(count: bytes.count, limit: WireVersion.maxMessageBytes)
        }
        var reader = ByteReader(bytes)
        let major = try reader.readUInt8()
        let minor = try reader.readUInt8()
        guard major == WireVersion.major else {
            throw .unsupportedVersion(
                peerMajor: major, peerMinor: minor, ourMajor: WireVersion.major, ourMinor: WireVersion.minor)
        }
        let tag = try reader.readUInt8()
        switch tag {
        case 1:
            self = .hello(
                version: try reader.readUInt16(), node: NodeID(try reader.readUInt32()),
                feedWatermark: try reader.readUInt64(), rulesVersion: try reader.readUInt64())
        case 2:
            self = .welcome(version: try reader.readUInt16(), originHighWater: try reader.readUInt64())
        case 3:
            let count = try reader.readCount(field: "push batch", limit: Self.maxBatch)
            var entries: [LogEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count { entries.append(try LogEntry.decode(from: &reader)) }
            self = .push(entries)
        case 4:
            self = .ack(upTo: try reader.readUInt64())
        case 5:
            self = .pull(after: try reader.readUInt64(), limit: try reader.readUInt32())
        case 6, 16:
            let count = try reader.readCount(field: "changes batch", limit: Self.maxBatch)
            var entries: [FeedEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let feed = try reader.readUInt64()
                entries.append(FeedEntry(feedSequence: feed, entry: try LogEntry.decode(from: &reader)))
            }
            let upTo = try reader.readUInt64()
            let more = try reader.readBool()
            var snapshots: [MemberSnapshot]?
            if tag == 16 {
                snapshots = []
                for _ in 0..<(try reader.readCount(field: "member snapshots", limit: Self.maxSnapshots)) {
                    snapshots?.append(try MemberSnapshot.decode(from: &reader))
                }
            }
            self = .changes(entries: entries, upTo: upTo, more: more, snapshots: snapshots)
        case 7:
            let requestID = try reader.readUInt32()
            let member = MemberID(rawValue: try reader.readUInt64())
            let accountTag = try reader.readUInt8()
            guard let account = Account(rawValue: accountTag) else {
                throw .unknownTag(field: "account", value: UInt64(accountTag))
            }
            self = .rightsRequest(
                requestID: requestID, member: member, account: account, points: try reader.readUInt64())
        case 8:
            let requestID = try reader.readUInt32()
            let granted = try reader.readUInt64()
            let entry = try reader.readBool() ? try LogEntry.decode(from: &reader) : nil
            self = .rightsGrant(requestID: requestID, granted: granted, entry: entry)
        case 9:
            let raw = try reader.readUInt16()
            guard let code = SyncErrorCode(rawValue: raw) else {
                throw .unknownTag(field: "error code", value: UInt64(raw))
            }
            self = .error(code: code, message: try reader.readString(field: "error message", limit: 4096))
        case 10:
            self = .rules(
                version: try reader.readUInt64(),
                document: try reader.readBytes(field: "rules", limit: Self.maxRulesBytes))
        case 11:
            self = .promoRequest(
                requestID: try reader.readUInt32(), member: MemberID(rawValue: try reader.readUInt64()),
                code: try reader.readString(field: "promo code", limit: 64))
        case 12:
            let requestID = try reader.readUInt32()
            let points = try reader.readUInt64()
            let entry = try reader.readBool() ? try LogEntry.decode(from: &reader) : nil
            let refusal = try reader.readString(field: "promo refusal", limit: 512)
            self = .promoResult(
                requestID: requestID, points: points, entry: entry, refusal: refusal.isEmpty ? nil : refusal)
        case 13:
            self = .telemetry(
                EdgeTelemetry(
                    unsyncedOperations: try reader.readUInt64(), writerQueueDepth: try reader.readUInt64(),
                    offlineMilliseconds: try reader.readUInt64(), redemptionsRefused: try reader.readUInt64(),
                    uncoveredPoints: try reader.readUInt64(), uptimeMilliseconds: try reader.readUInt64()))
        case 14:
            let requestID = try reader.readUInt32()
            let card = try reader.readString(field: "card", limit: 64)
            var hashes: [[UInt8]] = []
            for _ in 0..<(try reader.readCount(field: "phone hashes", limit: 8)) {
                hashes.append(try reader.readBytes(field: "phone hash", limit: 64))
            }
            self = .memberLookup(requestID: requestID, card: card, phoneHashes: hashes)
        case 15:
            let requestID = try reader.readUInt32()
            var snapshots: [MemberSnapshot] = []
            for _ in 0..<(try reader.readCount(field: "member snapshots", limit: 8)) {
                snapshots.append(try MemberSnapshot.decode(from: &reader))
            }
            self = .memberFound(requestID: requestID, snapshots: snapshots)
        default:
            throw .unknownTag(field: "message", value: UInt64(tag))
        }
        try reader.expectEnd()
    }
}

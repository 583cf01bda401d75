import Foundation
import Testing

@testable import SyncProtocol

/// Fixed messages and their exact bytes, kept in Fixtures/wire-v1.3.golden (one `name hex`
/// line each), so a change to the encoding is seen and a second implementation can check
/// itself. Regenerate deliberately with UPDATE_GOLDEN=1. Fixtures/wire-v1.0.golden to
/// wire-v1.2.golden hold the messages as those versions wrote them: they must still decode
/// (stores and hubs not yet upgraded).
@Suite struct GoldenVectorTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let fixture = fixtures.appendingPathComponent("wire-v1.\(WireVersion.minor).golden")

    static var vectors: [(String, SyncMessage)] {
        let member = MemberID(origin: NodeID(1), serial: 1)
        let stamp = HLCTimestamp(milliseconds: 1_764_000_000_000, logical: 2)
        let register = LogEntry(
            origin: NodeID(1), sequence: 1, timestamp: stamp, idempotencyKey: "register/4600000000015",
            operation: .registerMember(
                MemberRecord(
                    id: member, card: "4600000000015", phoneHash: [0xAA, 0xBB], referrer: nil, registeredAt: stamp)
            ), effects: [])
        let purchase = LogEntry(
            origin: NodeID(1), sequence: 2, timestamp: stamp, idempotencyKey: "1/A-0001",
            operation: .purchase(
                PurchaseRecord(
                    member: member, lane: "1", receipt: "A-0001", amountMinor: 200_000, pointsEarned: 100,
                    pointsRedeemed: 0)),
            effects: [SlotWrite(member: member, account: .main, slot: .earned(NodeID(1)), value: 100)])
        let grant = LogEntry(
            origin: .hub, sequence: 1, timestamp: stamp, idempotencyKey: "",
            operation: .rightsMove(member: member, account: .main, to: NodeID(2), points: 40),
            effects: [SlotWrite(member: member, account: .main, slot: .moved(.hub, NodeID(2)), value: 40)])
        let merge = LogEntry(
            origin: .hub, sequence: 2, timestamp: stamp, idempotencyKey: "",
            operation: .memberMerge(
                MemberMerge(
                    survivor: member, merged: MemberID(origin: NodeID(2), serial: 1), account: .main, points: 60,
                    reversed: 1_000)),
            effects: [
                SlotWrite(
                    member: MemberID(origin: NodeID(2), serial: 1), account: .main, slot: .spent(.hub), value: 1_060),
                SlotWrite(member: member, account: .main, slot: .earned(.hub), value: 60),
            ])
        let snapshot = MemberSnapshot(
            record: MemberRecord(
                id: member, card: "4600000000015", phoneHash: [0xAA, 0xBB], referrer: nil, registeredAt: stamp),
            mergedInto: MemberID(origin: NodeID(3), serial: 9),
            slots: [
                SlotWrite(member: member, account: .main, slot: .earned(NodeID(1)), value: 100),
                SlotWrite(member: member, account: .main, slot: .moved(NodeID(1), .hub), value: 100),
            ])
        return [
            ("hello", .hello(version: 1, node: NodeID(2), feedWatermark: 7, rulesVersion: 3)),
            ("welcome", .welcome(version: 1, originHighWater: 3)),
            ("push", .push([register, purchase])),
            ("ack", .ack(upTo: 2)),
            ("pull", .pull(after: 7, limit: 256)),
            ("changes", .changes(entries: [FeedEntry(feedSequence: 8, entry: grant)], upTo: 8, more: false)),
            ("rights-request", .rightsRequest(requestID: 1, member: member, account: .main, points: 40)),
            ("rights-grant", .rightsGrant(requestID: 1, granted: 40, entry: grant)),
            ("member-merge", .changes(entries: [FeedEntry(feedSequence: 9, entry: merge)], upTo: 9, more: false)),
            ("error", .error(code: .refusedEntry, message: "gap")),
            ("rules", .rules(version: 2, document: Array("rules-v2".utf8))),
            (
                "telemetry",
                .telemetry(
                    EdgeTelemetry(
                        unsyncedOperations: 5, writerQueueDepth: 1, offlineMilliseconds: 90_000,
                        redemptionsRefused: 2, uncoveredPoints: 40, uptimeMilliseconds: 3_600_000))
            ),
            (
                "scoped-changes",
                .changes(
                    entries: [FeedEntry(feedSequence: 12, entry: purchase)], upTo: 14, more: true,
                    snapshots: [snapshot])
            ),
            ("member-lookup", .memberLookup(requestID: 4, card: "4600000000015", phoneHashes: [[0xAA, 0xBB]])),
            ("member-found", .memberFound(requestID: 4, snapshots: [snapshot])),
        ]
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }

    static func bytes(_ hex: String) -> [UInt8] {
        var result: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            result.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return result
    }

    @Test func encodingMatchesTheGoldenVectorsAndTheyDecodeBack() throws {
        let lines = Self.vectors.map { "\($0.0) \(Self.hex($0.1.encoded))" }
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try (lines.joined(separator: "\n") + "\n").write(to: Self.fixture, atomically: true, encoding: .utf8)
        }
        let stored = try String(contentsOf: Self.fixture, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(stored.count == Self.vectors.count)
        for ((name, message), line) in zip(Self.vectors, stored) {
            let parts = line.split(separator: " ")
            #expect(parts.first.map(String.init) == name)
            let golden = Self.bytes(String(parts.last ?? ""))
            #expect(message.encoded == golden, "encoding of \(name) changed")
            #expect(try SyncMessage(decoding: golden) == message)
        }
    }

    @Test(arguments: [(0, 10), (1, 11), (2, 12)])
    func messagesWrittenByEarlierMinorVersionsStillDecode(minor: UInt8, count: Int) throws {
        let stored = try String(
            contentsOf: Self.fixtures.appendingPathComponent("wire-v1.\(minor).golden"), encoding: .utf8
        ).split(separator: "\n")
        let vectors = Dictionary(uniqueKeysWithValues: Self.vectors)
        #expect(stored.count == count)
        for line in stored {
            let parts = line.split(separator: " ")
            let golden = Self.bytes(String(parts[1]))
            #expect(golden[1] == minor, "a 1.\(minor) vector")
            #expect(try SyncMessage(decoding: golden) == vectors[String(parts[0])])
        }
    }
}

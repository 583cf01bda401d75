import Testing

@testable import SyncProtocol

private let member = MemberID(origin: NodeID(1), serial: 7)

private func sampleEntries() -> [LogEntry] {
    let stamp = HLCTimestamp(milliseconds: 1_700_000_000_000, logical: 3)
    return [
        LogEntry(
            origin: NodeID(1), sequence: 1, timestamp: stamp, idempotencyKey: "register/4600000000015",
            operation: .registerMember(
                MemberRecord(
                    id: member, card: "4600000000015", phoneHash: [1, 2, 3], referrer: nil, registeredAt: stamp)),
            effects: []),
        LogEntry(
            origin: NodeID(1), sequence: 2, timestamp: stamp, idempotencyKey: "1/r1",
            operation: .purchase(
                PurchaseRecord(
                    member: member, lane: "1", receipt: "r1", amountMinor: 200_000, pointsEarned: 100, pointsRedeemed: 0
                )),
            effects: [SlotWrite(member: member, account: .main, slot: .earned(NodeID(1)), value: 100)]),
        LogEntry(
            origin: .hub, sequence: 9, timestamp: stamp, idempotencyKey: "",
            operation: .rightsMove(member: member, account: .promo, to: NodeID(2), points: 40),
            effects: [SlotWrite(member: member, account: .promo, slot: .moved(.hub, NodeID(2)), value: 40)]),
    ]
}

@Suite struct WireTests {
    @Test func logEntriesRoundTrip() throws {
        for entry in sampleEntries() {
            #expect(try LogEntry(decoding: entry.encoded) == entry)
        }
    }

    @Test func everySyncMessageRoundTrips() throws {
        let entries = sampleEntries()
        let messages: [SyncMessage] = [
            .hello(version: 1, node: NodeID(3), feedWatermark: 99, rulesVersion: 4),
            .rules(version: 5, document: Array("{\"accrual\":500}".utf8)),
            .welcome(version: 1, originHighWater: 12),
            .push(entries),
            .ack(upTo: 2),
            .pull(after: 5, limit: 256),
            .changes(
                entries: entries.enumerated().map {
                    FeedEntry(feedSequence: UInt64($0.offset + 10), entry: $0.element)
                }, upTo: 12, more: true),
            .rightsRequest(requestID: 4, member: member, account: .main, points: 40),
            .rightsGrant(requestID: 4, granted: 40, entry: entries[2]),
            .rightsGrant(requestID: 5, granted: 0, entry: nil),
            .error(code: .refusedEntry, message: "gap"),
            .promoRequest(requestID: 9, member: member, code: "7QK2M9XW3P"),
            .promoResult(
                requestID: 9, points: 500,
                entry: LogEntry(
                    origin: .hub, sequence: 3, timestamp: HLCTimestamp(rawValue: 5), idempotencyKey: "",
                    operation: .promoCredit(member: member, code: "7QK2M9XW3P", points: 500),
                    effects: [SlotWrite(member: member, account: .promo, slot: .earned(.hub), value: 500)]),
                refusal: nil),
            .promoResult(requestID: 10, points: 0, entry: nil, refusal: "promo code X was already used"),
            .telemetry(
                EdgeTelemetry(
                    unsyncedOperations: 12, writerQueueDepth: 3, offlineMilliseconds: 60_000, redemptionsRefused: 2,
                    uncoveredPoints: 150, uptimeMilliseconds: .max)),
            .changes(
                entries: [
                    FeedEntry(
                        feedSequence: 4,
                        entry: LogEntry(
                            origin: .hub, sequence: 4, timestamp: HLCTimestamp(rawValue: 6), idempotencyKey: "",
                            operation: .expiry(member: member, points: 70, cutoffDay: -3),
                            effects: [SlotWrite(member: member, account: .main, slot: .spent(.hub), value: 70)]))
                ], upTo: 4, more: false),
        ]
        for message in messages {
            #expect(try SyncMessage(decoding: message.encoded) == message)
        }
    }

    @Test func everyTruncationOfAMessageIsRefused() {
        let bytes = SyncMessage.push(sampleEntries()).encoded
        for length in 0..<bytes.count {
            #expect(throws: WireError.self) { try SyncMessage(decoding: Array(bytes[0..<length])) }
        }
    }

    /// Text fields take any valid UTF-8, U+FFFD and NUL included, and refuse every kind of
    /// malformed sequence rather than repairing it.
    @Test(
        arguments: [
            ([0x61, 0x62, 0x63], true),
            (Array("kaffe-ø-€-𝄞".utf8), true),
            ([0xEF, 0xBF, 0xBD], true),  // U+FFFD itself
            ([0x61, 0x00, 0x62], true),
            ([], true),
            ([0x80], false),  // a lone continuation byte
            ([0xC3], false),  // a sequence cut short
            ([0xE2, 0x82], false),
            ([0xC0, 0xAF], false),  // an overlong "/"
            ([0xED, 0xA0, 0x80], false),  // a surrogate
            ([0xF4, 0x90, 0x80, 0x80], false),  // beyond U+10FFFF
            ([0xFF], false),
            (
                [0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x70, 0xFE],
                false
            ),
        ] as [([UInt8], Bool)])
    func textFieldsAcceptValidUTF8AndRefuseTheRest(bytes: [UInt8], valid: Bool) throws {
        var writer = ByteWriter()
        writer.writeBytes(bytes)
        var reader = ByteReader(writer.bytes)
        if valid {
            #expect(try Array(reader.readString(field: "key").utf8) == bytes)
        } else {
            #expect(throws: WireError.invalidText(field: "key")) { try reader.readString(field: "key") }
        }
    }

    @Test func trailingBytesAndUnknownTagsAreRefused() {
        #expect(throws: WireError.trailingBytes(count: 1)) {
            try SyncMessage(decoding: SyncMessage.ack(upTo: 1).encoded + [0])
        }
        #expect(throws: WireError.unknownTag(field: "message", value: 200)) { try SyncMessage(decoding: [1, 0, 200]) }
    }

    @Test func memberSnapshotsRoundTripAndRefuseWhatTheyMayNotCarry() throws {
        let entries = sampleEntries()
        let snapshot = MemberSnapshot(
            record: MemberRecord(
                id: member, card: "4600000000015", phoneHash: [1, 2, 3],
                referrer: MemberID(origin: NodeID(2), serial: 1),
                registeredAt: HLCTimestamp(rawValue: 9)),
            mergedInto: MemberID(origin: NodeID(3), serial: 4),
            slots: [SlotWrite(member: member, account: .promo, slot: .earned(.hub), value: 500)])
        let messages: [SyncMessage] = [
            .changes(
                entries: [FeedEntry(feedSequence: 3, entry: entries[1])], upTo: 5, more: true, snapshots: [snapshot]),
            .changes(entries: [], upTo: 5, more: false, snapshots: []),
            .memberLookup(requestID: 1, card: "4600000000015", phoneHashes: [[1, 2], [3]]),
            .memberLookup(requestID: 2, card: "", phoneHashes: []),
            .memberFound(requestID: 1, snapshots: [snapshot, snapshot]),
            .memberFound(requestID: 2, snapshots: []),
        ]
        for message in messages {
            #expect(try SyncMessage(decoding: message.encoded) == message)
            let bytes = message.encoded
            for length in 0..<bytes.count {
                #expect(throws: WireError.self) { try SyncMessage(decoding: Array(bytes[0..<length])) }
            }
        }
        // A whole feed and a partner-group feed are told apart by their type, not their length.
        #expect(SyncMessage.changes(entries: [], upTo: 5, more: false).encoded[2] == 6)
        #expect(SyncMessage.changes(entries: [], upTo: 5, more: false, snapshots: []).encoded[2] == 16)
        // A snapshot's slots are the member's own.
        var foreign = snapshot
        foreign.slots[0].member = MemberID(origin: NodeID(9), serial: 9)
        #expect(throws: WireError.self) {
            try SyncMessage(decoding: SyncMessage.memberFound(requestID: 1, snapshots: [foreign]).encoded)
        }
        // Too many phone hashes or snapshots are refused before allocating.
        let hashes = Array(repeating: [UInt8](repeating: 1, count: 32), count: 9)
        #expect(throws: WireError.tooLarge(field: "phone hashes", count: 9, limit: 8)) {
            try SyncMessage(decoding: SyncMessage.memberLookup(requestID: 1, card: "", phoneHashes: hashes).encoded)
        }
        #expect(throws: WireError.tooLarge(field: "member snapshots", count: 9, limit: 8)) {
            try SyncMessage(
                decoding: SyncMessage.memberFound(requestID: 1, snapshots: Array(repeating: snapshot, count: 9)).encoded
            )
        }
    }

    @Test func anotherMajorVersionIsRefusedNamingBothVersions() {
        var bytes = SyncMessage.ack(upTo: 1).encoded
        bytes[0] = 2
        bytes[1] = 3
        let error = #expect(throws: WireError.self) { try SyncMessage(decoding: bytes) }
        #expect(
            error?.description.contains("2.3") == true
                && error?.description.contains("\(WireVersion.major).\(WireVersion.minor)") == true)
    }

    @Test func aFrameOverTheLimitIsRefusedBeforeDecoding() {
        let bytes = [UInt8](repeating: 0, count: WireVersion.maxMessageBytes + 1)
        #expect(throws: WireError.frameTooLarge(count: bytes.count, limit: WireVersion.maxMessageBytes)) {
            try SyncMessage(decoding: bytes)
        }
    }

    @Test func hugeCountsAreRefusedBeforeAllocating() {
        var writer = ByteWriter()
        writer.write(WireVersion.major)
        writer.write(WireVersion.minor)
        writer.write(UInt8(3))
        writer.write(UInt32.max)
        #expect(throws: WireError.tooLarge(field: "push batch", count: Int(UInt32.max), limit: SyncMessage.maxBatch)) {
            try SyncMessage(decoding: writer.bytes)
        }
    }

    @Test func originBindingRefusesForeignSlots() {
        var entry = sampleEntries()[1]
        entry.effects = [SlotWrite(member: member, account: .main, slot: .earned(NodeID(2)), value: 100)]
        #expect(throws: EntryError.foreignSlot(origin: NodeID(1), slotOwner: NodeID(2))) { try entry.validateOrigin() }
        #expect(throws: Never.self) { try sampleEntries()[1].validateOrigin() }
    }
}

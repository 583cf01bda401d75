// Figures for the SyncProtocol core, printed as a table and as JSON (BENCH_JSON=path).
// Run with `make bench-sync` (release build). Every figure comes from this run.
import Foundation
import SyncProtocol

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// Runs `body` until at least `minimum` seconds have passed; returns operations per second.
func rate(operations: Int, minimum: Double = 1.0, _ body: () -> Void) -> Double {
    var total = 0
    var elapsed = 0.0
    repeat {
        elapsed += seconds(body)
        total += operations
    } while elapsed < minimum
    return Double(total) / elapsed
}

var results: [(String, String, Double, String)] = []
@MainActor func report(_ name: String, _ value: Double, _ unit: String, _ note: String) {
    results.append((name, unit, value, note))
    let figure = String(Int64(value.rounded()))
    print(
        name.padding(toLength: 46, withPad: " ", startingAt: 0)
            + String(repeating: " ", count: max(0, 14 - figure.count)) + figure + "  "
            + unit.padding(toLength: 10, withPad: " ", startingAt: 0) + "  " + note)
}

// 1. Slot merges: raise slots of counters with the max rule.
do {
    var sink: UInt64 = 0
    let keys = (0..<64).map { SlotKey.earned(NodeID(UInt32($0))) }
    let merges = rate(operations: 1_000_000) {
        var counter = EscrowCounter()
        for index in 0..<1_000_000 {
            counter.apply(keys[index & 63], UInt64(index))
        }
        sink &+= counter[keys[0]]
    }
    report("slot merges (EscrowCounter.apply)", merges, "merges/s", "target >= 5,000,000 on one core")
    var replica = ReplicaState()
    let member = MemberID(origin: NodeID(1), serial: 1)
    let writes = (0..<100_000).map {
        SlotWrite(
            member: MemberID(rawValue: member.rawValue + UInt64($0 % 1000)), account: .main, slot: keys[$0 & 63],
            value: UInt64($0))
    }
    let replicaMerges = rate(operations: writes.count) { replica.apply(writes) }
    report("slot merges (ReplicaState.apply, 1k members)", replicaMerges, "merges/s", "with delta versioning")
    if sink == 42 { print("") }
}

// 2. Entries encoded and decoded.
let stamp = HLCTimestamp(milliseconds: 1_764_000_000_000, logical: 0)
func purchase(_ index: Int) -> LogEntry {
    let member = MemberID(origin: NodeID(1), serial: UInt32(index))
    return LogEntry(
        origin: NodeID(1), sequence: UInt64(index + 1), timestamp: stamp, idempotencyKey: "1/R-\(index)",
        operation: .purchase(
            PurchaseRecord(
                member: member, lane: "1", receipt: "R-\(index)", amountMinor: 123_400, pointsEarned: 61,
                pointsRedeemed: 0)),
        effects: [
            SlotWrite(member: member, account: .main, slot: .earned(NodeID(1)), value: UInt64(61 * (index % 7 + 1)))
        ])
}
do {
    let entries = (0..<10_000).map(purchase)
    var encoded: [[UInt8]] = []
    let encodeRate = rate(operations: entries.count) { encoded = entries.map(\.encoded) }
    report("log entries encoded", encodeRate, "entries/s", "")
    var decodedCount = 0
    let decodeRate = rate(operations: encoded.count) {
        decodedCount = encoded.reduce(0) { count, bytes in count + ((try? LogEntry(decoding: bytes)) != nil ? 1 : 0) }
    }
    report("log entries decoded", decodeRate, "entries/s", "\(decodedCount) of \(encoded.count) decoded")
}

// 3. Sync 1 % changed of 1,000,000 members: delta against full state.
do {
    let members = 1_000_000
    var replica = ReplicaState()
    var initial: [SlotWrite] = []
    initial.reserveCapacity(members)
    for index in 0..<members {
        let member = MemberID(origin: NodeID(UInt32(index % 1000 + 1)), serial: UInt32(index))
        initial.append(
            SlotWrite(member: member, account: .main, slot: .earned(NodeID(UInt32(index % 1000 + 1))), value: 100))
    }
    replica.apply(initial)
    let watermark = replica.version
    var changedEntries: [LogEntry] = []
    for index in stride(from: 0, to: members, by: 100) {
        let node = NodeID(UInt32(index % 1000 + 1))
        let member = MemberID(origin: node, serial: UInt32(index))
        let write = try! replica.earn(at: node, AccountKey(member: member, account: .main), 25)
        changedEntries.append(
            LogEntry(
                origin: node, sequence: 1, timestamp: stamp, idempotencyKey: "1/R-\(index)",
                operation: .purchase(
                    PurchaseRecord(
                        member: member, lane: "1", receipt: "R-\(index)", amountMinor: 50_000, pointsEarned: 25,
                        pointsRedeemed: 0)), effects: [write]))
    }
    let channelOverhead = 4 + 17  // record length prefix + secretstream tag and MAC
    func framedBytes(_ batches: [SyncMessage]) -> Int { batches.reduce(0) { $0 + $1.encoded.count + channelOverhead } }
    // The delta as the hub's feed serves it: changes messages of at most 512 entries.
    var batches: [SyncMessage] = []
    var feedSequence: UInt64 = 0
    for start in stride(from: 0, to: changedEntries.count, by: SyncMessage.maxBatch) {
        let slice = changedEntries[start..<min(start + SyncMessage.maxBatch, changedEntries.count)]
        let feed = slice.map { entry -> FeedEntry in
            feedSequence += 1
            return FeedEntry(feedSequence: feedSequence, entry: entry)
        }
        batches.append(
            .changes(entries: feed, upTo: feedSequence, more: start + SyncMessage.maxBatch < changedEntries.count))
    }
    let deltaBytes = framedBytes(batches)
    let rawBytes = changedEntries.reduce(0) { $0 + $1.encoded.count }
    // The counter delta alone (slot writes after the watermark) against the full state.
    let counterDelta = replica.delta(after: watermark).writes
    let slotBytes = 8 + 1 + 1 + 4 + 4 + 8
    let fullStateBytes = replica.fullState.count * slotBytes
    report("changed members (1 % of 1,000,000)", Double(changedEntries.count), "members", "")
    report(
        "delta on the wire (entries, framed)", Double(deltaBytes), "bytes",
        String(format: "%.2fx the raw entries (target <= 2x)", Double(deltaBytes) / Double(rawBytes)))
    report("raw size of the changed entries", Double(rawBytes), "bytes", "")
    report(
        "counter delta (slots changed)", Double(counterDelta.count * slotBytes), "bytes", "\(counterDelta.count) slots")
    report(
        "full state transfer (all slots)", Double(fullStateBytes), "bytes",
        String(format: "delta is %.1f%% of it", 100 * Double(deltaBytes) / Double(fullStateBytes)))

    // Time, one core, no network: encode at the hub, decode and apply at the store.
    // The delta: the feed's changes messages, decoded and their entries' effects applied to
    // a replica that had the state before. The full state: every slot encoded (member,
    // account, kind, from, to, value), decoded and applied to an empty replica.
    var deltaSeconds = Double.infinity
    var fullSeconds = Double.infinity
    for _ in 0..<3 {
        // The store's replica before the sync, built outside the timing.
        var receiver = ReplicaState()
        _ = receiver.apply(initial)
        let start = now()
        for batch in batches {
            guard case .changes(let entries, _, _, _) = try SyncMessage(decoding: batch.encoded) else { continue }
            for feed in entries { _ = receiver.apply(feed.entry.effects) }
        }
        deltaSeconds = min(deltaSeconds, now() - start)
        precondition(receiver.fullState.count == replica.fullState.count)
    }
    let everything = replica.fullState
    for _ in 0..<3 {
        let start = now()
        var writer = ByteWriter(capacity: everything.count * slotBytes)
        for write in everything {
            writer.write(write.member.rawValue)
            writer.write(write.account.rawValue)
            writer.write(write.slot.kind.rawValue)
            writer.write(write.slot.from.rawValue)
            writer.write(write.slot.to.rawValue)
            writer.write(write.value)
        }
        var reader = ByteReader(writer.bytes)
        var writes: [SlotWrite] = []
        writes.reserveCapacity(everything.count)
        while reader.remaining > 0 {
            let member = MemberID(rawValue: try reader.readUInt64())
            let account = Account(rawValue: try reader.readUInt8())!
            let kind = SlotKind(rawValue: try reader.readUInt8())!
            let from = NodeID(try reader.readUInt32())
            let to = NodeID(try reader.readUInt32())
            writes.append(
                SlotWrite(
                    member: member, account: account, slot: SlotKey(kind: kind, from: from, to: to),
                    value: try reader.readUInt64()))
        }
        var receiver = ReplicaState()
        _ = receiver.apply(writes)
        fullSeconds = min(fullSeconds, now() - start)
        precondition(receiver.fullState.count == everything.count)
    }
    report(
        "time to sync 1 % changed (decode and apply the delta)", deltaSeconds * 1000, "ms",
        String(format: "%.1f%% of the full-state time; one core, no network", 100 * deltaSeconds / fullSeconds))
    report(
        "time to transfer the full state (encode, decode, apply)", fullSeconds * 1000, "ms",
        "the baseline; one core, no network")
}

if let path = ProcessInfo.processInfo.environment["BENCH_JSON"] {
    let rows = results.map { "{\"name\":\"\($0.0)\",\"unit\":\"\($0.1)\",\"value\":\($0.2),\"note\":\"\($0.3)\"}" }
    try? ("[" + rows.joined(separator: ",") + "]\n").write(toFile: path, atomically: true, encoding: .utf8)
}

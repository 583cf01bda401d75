// Channel figures: bulk sync through the encrypted channel against the same transfer in
// plaintext over loopback TCP (libuv on both ends), and handshakes per second.
// Run with `make bench-channel` (release build). Every figure comes from this run.
import Foundation
import NodeKit
import SyncProtocol

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

let entryCount = 200_000
let stamp = HLCTimestamp(milliseconds: 1_764_000_000_000, logical: 0)
let entries = (0..<entryCount).map { index -> LogEntry in
    let member = MemberID(origin: NodeID(1), serial: UInt32(index))
    return LogEntry(
        origin: NodeID(1), sequence: UInt64(index + 1), timestamp: stamp, idempotencyKey: "1/R-\(index)",
        operation: .purchase(
            PurchaseRecord(
                member: member, lane: "1", receipt: "R-\(index)", amountMinor: 123_400, pointsEarned: 61,
                pointsRedeemed: 0)),
        effects: [SlotWrite(member: member, account: .main, slot: .earned(NodeID(1)), value: 61)])
}
let batches: [[UInt8]] = stride(from: 0, to: entryCount, by: SyncMessage.maxBatch).map {
    SyncMessage.push(Array(entries[$0..<min($0 + SyncMessage.maxBatch, entryCount)])).encoded
}
let payloadBytes = batches.reduce(0) { $0 + $1.count }

/// Parses u32-length-prefixed plaintext records the way the channel parses its own
/// (one buffer, a read index, one copy per record), so the baseline is as lean as the channel.
struct PlainRecords {
    var buffer: [UInt8] = []
    mutating func feed(_ bytes: [UInt8]) -> [[UInt8]] {
        if buffer.isEmpty { buffer = bytes } else { buffer += bytes }
        var records: [[UInt8]] = []
        var offset = 0
        while buffer.count - offset >= 4 {
            let length =
                Int(buffer[offset]) << 24 | Int(buffer[offset + 1]) << 16 | Int(buffer[offset + 2]) << 8
                | Int(buffer[offset + 3])
            guard buffer.count - offset - 4 >= length else { break }
            records.append(Array(buffer[(offset + 4)..<(offset + 4 + length)]))
            offset += 4 + length
        }
        if offset == buffer.count {
            buffer.removeAll(keepingCapacity: false)
        } else if offset > 0 {
            buffer.removeFirst(offset)
        }
        return records
    }
}

func plainRecord(_ body: [UInt8]) -> [UInt8] {
    var writer = ByteWriter(capacity: body.count + 4)
    writer.write(UInt32(body.count))
    writer.writeRaw(body)
    return writer.bytes
}

/// What the receiving thread reports back.
final class Receipt: @unchecked Sendable {
    // @unchecked: written by the server thread before `done` is signalled, read after.
    var port: UInt16 = 0
    var finish = 0.0
    var received = 0
    let ready = DispatchSemaphore(value: 0)
    let done = DispatchSemaphore(value: 0)
}

/// Sends every batch from a store-like client to a hub-like server, each on its own thread
/// and libuv loop (as two processes would be); the server decodes every message. Returns
/// seconds from the first write to the last decoded entry.
func transfer(encrypted: Bool) throws -> Double {
    let hubKey = SigningKeyPair.generate()
    let storeKey = SigningKeyPair.generate()
    let receipt = Receipt()
    let serverThread = Thread {
        guard let loop = try? EventLoop(), let listener = try? TCPListener(loop: loop) else { fatalError("loop") }
        let guardian = HandshakeGuard()
        var server: TCPStream?
        func deliver(_ message: [UInt8]) {
            if case .push(let decoded)? = try? SyncMessage(decoding: message) { receipt.received += decoded.count }
            if receipt.received == entryCount {
                receipt.finish = now()
                loop.stop()
            }
        }
        receipt.port =
            (try? listener.listen(on: SocketAddress(host: "127.0.0.1", port: 0)) { stream in
                server = stream
                var plain = PlainRecords()
                let channel = SecureChannel.responder(identity: hubKey, guardian: guardian)
                stream.onRead = { [unowned stream] bytes in
                    guard encrypted else {
                        for record in plain.feed(bytes) { deliver(record) }
                        return
                    }
                    var pending = channel.receive(bytes)
                    while !pending.isEmpty {
                        switch pending.removeFirst() {
                        case .send(let out): stream.write(out)
                        case .verifyPeer: pending += channel.peerVerified(allowed: true)
                        case .deliver(let message): deliver(message)
                        default: break
                        }
                    }
                }
                try? stream.startReading()
            }) ?? 0
        receipt.ready.signal()
        loop.run()
        server?.close()
        listener.close()
        loop.shutdown()
        receipt.done.signal()
    }
    serverThread.start()
    receipt.ready.wait()

    let loop = try EventLoop()
    let stream = try TCPStream(loop: loop)
    var start = 0.0
    var channel: SecureChannel?
    func sendAll() {
        start = now()
        for batch in batches { stream.write(encrypted ? channel!.seal(batch)! : plainRecord(batch)) }
        stream.closeAfterWrites()
    }
    try stream.connect(to: SocketAddress(host: "127.0.0.1", port: receipt.port)) { _ in
        guard encrypted else {
            sendAll()
            return
        }
        let (initiator, hello) = SecureChannel.initiator(identity: storeKey, pinnedPeer: hubKey.publicKey, now: 1)
        channel = initiator
        stream.onRead = { bytes in
            for event in initiator.receive(bytes) {
                switch event {
                case .send(let out): stream.write(out)
                case .established: sendAll()
                default: break
                }
            }
        }
        try? stream.startReading()
        stream.write(hello)
    }
    loop.run()
    loop.shutdown()
    receipt.done.wait()
    precondition(receipt.received == entryCount, "transfer incomplete")
    return receipt.finish - start
}

print(
    "bulk sync of \(entryCount) log entries (\(payloadBytes / 1_048_576) MiB in \(batches.count) push messages), loopback TCP"
)
// The machine's speed moves between runs (on this shared VM, whole stretches of runs are a third
// faster or slower), so the two transfers run as adjacent pairs, in alternating order (plaintext
// first, then channel first), and each pair gives one ratio. The median of the pair ratios is the
// figure; its 95 % confidence interval comes from order statistics (no assumption about the
// distribution). Medians of each kind are printed too.
let pairs = 41
var plainRuns: [Double] = []
var secureRuns: [Double] = []
var pairRatios: [Double] = []
for index in 0..<pairs {
    let plainFirst = index % 2 == 0
    let first = try transfer(encrypted: !plainFirst)
    let second = try transfer(encrypted: plainFirst)
    let (plainRun, secureRun) = plainFirst ? (first, second) : (second, first)
    plainRuns.append(plainRun)
    secureRuns.append(secureRun)
    pairRatios.append(secureRun / plainRun)
}
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
/// The 1-based ranks (k, n + 1 - k) of the sorted sample that bound its median with at least
/// 95 % confidence: the largest k with P(Binomial(n, 1/2) < k) <= 2.5 %.
func medianInterval(_ values: [Double]) -> (low: Double, high: Double) {
    let n = values.count
    var cumulative = 0.0
    var coefficient = 1.0
    var k = 0
    for i in 0...n {
        if i > 0 { coefficient = coefficient * Double(n - i + 1) / Double(i) }
        let next = cumulative + coefficient * pow(0.5, Double(n))
        if next > 0.025 { break }
        cumulative = next
        k = i + 1
    }
    let sorted = values.sorted()
    let rank = max(k, 1)
    return (sorted[rank - 1], sorted[n - rank])
}
let plain = median(plainRuns)
let secure = median(secureRuns)
let pairedSlower = (median(pairRatios) - 1) * 100
let interval = medianInterval(pairRatios)
let slower = (secure / plain - 1) * 100
let bestSlower = (secureRuns.min()! / plainRuns.min()! - 1) * 100
print(String(format: "  runs (s), plaintext: %@", plainRuns.map { String(format: "%.3f", $0) }.joined(separator: " ")))
print(String(format: "  runs (s), channel:   %@", secureRuns.map { String(format: "%.3f", $0) }.joined(separator: " ")))
print(
    String(
        format: "  plaintext framing (median)        %8.0f entries/s  %7.1f MB/s", Double(entryCount) / plain,
        Double(payloadBytes) / plain / 1e6))
print(
    String(
        format: "  secure channel (median)           %8.0f entries/s  %7.1f MB/s", Double(entryCount) / secure,
        Double(payloadBytes) / secure / 1e6))
print(
    String(
        format:
            "  channel cost: %+.1f %% median of %d pair ratios (95 %% CI %+.1f %% to %+.1f %%; target: at most 10 %% slower)",
        pairedSlower, pairs, (interval.low - 1) * 100, (interval.high - 1) * 100))
print(
    String(
        format: "  unpaired: %+.1f %% on medians, %+.1f %% on best runs; suite %@", slower, bestSlower,
        "\(CipherSuite.supported.first!)"))

// Raw AEAD over the same frames: the floor of what the channel adds on each side.
var rawOpenGBs = 0.0
var rawSealGBs = 0.0
var decodeOnly = 0.0
var openAndDecode = 0.0
do {
    let hubKey = SigningKeyPair.generate()
    let storeKey = SigningKeyPair.generate()
    let guardian = HandshakeGuard()
    let (store, hello) = SecureChannel.initiator(identity: storeKey, pinnedPeer: hubKey.publicKey, now: 1)
    let hub = SecureChannel.responder(identity: hubKey, guardian: guardian)
    var toStore = hub.receive(hello).compactMap { if case .send(let bytes) = $0 { bytes } else { nil } }
    let toHub = toStore.flatMap { store.receive($0) }.compactMap {
        if case .send(let bytes) = $0 { bytes } else { nil }
    }
    for bytes in toHub {
        for event in hub.receive(bytes) { if case .verifyPeer = event { _ = hub.peerVerified(allowed: true) } }
    }
    toStore.removeAll()
    var sealed: [[UInt8]] = []
    let rounds = 5
    let sealStart = now()
    for _ in 0..<rounds { sealed += batches.map { store.seal($0)! } }
    let sealSeconds = (now() - sealStart) / Double(rounds)
    let openStart = now()
    var opened = 0
    for record in sealed { opened += hub.receive(record).count }
    let openSeconds = (now() - openStart) / Double(rounds)
    precondition(opened == batches.count * rounds, "every frame opens")
    rawOpenGBs = Double(payloadBytes) / openSeconds / 1e9
    rawSealGBs = Double(payloadBytes) / sealSeconds / 1e9
    print(
        String(
            format: "raw frame sealing %.2f GB/s, opening %.2f GB/s (%@): %.1f ms and %.1f ms for this transfer",
            Double(payloadBytes) / sealSeconds / 1e9, Double(payloadBytes) / openSeconds / 1e9,
            "\(store.suite.map { "\($0)" } ?? "?")", sealSeconds * 1000, openSeconds * 1000))

    // The receiver's CPU for the whole transfer in one thread, no network and no scheduling:
    // the plaintext records copied out and decoded, against the frames opened and decoded.
    func decode(_ message: [UInt8]) -> Int {
        if case .push(let decoded)? = try? SyncMessage(decoding: message) { return decoded.count }
        return 0
    }
    let plainRecords = batches.map(plainRecord)
    var plainTimes: [Double] = []
    var openTimes: [Double] = []
    for _ in 0..<15 {
        var plain = PlainRecords()
        var start = now()
        var count = 0
        for record in plainRecords { for message in plain.feed(record) { count += decode(message) } }
        plainTimes.append(now() - start)
        precondition(count == entryCount)
        let frames = batches.map { store.seal($0)! }
        start = now()
        count = 0
        for frame in frames {
            for event in hub.receive(frame) { if case .deliver(let message) = event { count += decode(message) } }
        }
        openTimes.append(now() - start)
        precondition(count == entryCount)
    }
    decodeOnly = plainTimes.sorted()[plainTimes.count / 2]
    openAndDecode = openTimes.sorted()[openTimes.count / 2]
    print(
        String(
            format: "receiver CPU for the transfer, one thread: decode %.1f ms, open + decode %.1f ms (%+.1f %%)",
            decodeOnly * 1000, openAndDecode * 1000, (openAndDecode / decodeOnly - 1) * 100))
}

// Handshakes: a full handshake in one thread, and the responder's share of the CPU.
let hubKey = SigningKeyPair.generate()
let storeKey = SigningKeyPair.generate()
let guardian = HandshakeGuard()
let handshakes = 2_000
var responderSeconds = 0.0
let totalStart = now()
for index in 0..<handshakes {
    let (initiator, message1) = SecureChannel.initiator(
        identity: storeKey, pinnedPeer: hubKey.publicKey, now: UInt64(index + 1))
    let responder = SecureChannel.responder(identity: hubKey, guardian: guardian)
    var mark = now()
    let reply = responder.receive(message1)
    responderSeconds += now() - mark
    guard case .send(let message2)? = reply.first, case .send(let message3)? = initiator.receive(message2).first else {
        fatalError("handshake failed")
    }
    mark = now()
    _ = responder.receive(message3)
    _ = responder.peerVerified(allowed: true)
    responderSeconds += now() - mark
    precondition(responder.isOpen)
}
let total = now() - totalStart
print(String(format: "handshakes, both ends in one thread  %8.0f /s", Double(handshakes) / total))
print(
    String(
        format: "handshakes a hub core completes      %8.0f /s  (responder work only)",
        Double(handshakes) / responderSeconds))

if let path = ProcessInfo.processInfo.environment["BENCH_JSON"] {
    func row(_ name: String, _ value: Double, _ unit: String, _ note: String) -> JSONValue {
        .object(["name": .string(name), "value": .double(value), "unit": .string(unit), "note": .string(note)])
    }
    let rows: [JSONValue] = [
        row("bulk sync, plaintext framing (median)", Double(entryCount) / plain, "entries/s", "baseline, loopback TCP"),
        row(
            "bulk sync through the secure channel (median)", Double(entryCount) / secure, "entries/s",
            String(
                format:
                    "%+.1f %% vs plaintext, median of %d paired runs (95 %% CI %+.1f %% to %+.1f %%; target <= +10 %%); unpaired medians %+.1f %%, best runs %+.1f %%",
                pairedSlower, pairs, (interval.low - 1) * 100, (interval.high - 1) * 100, slower, bestSlower)),
        row(
            "receiver CPU for the transfer: open + decode (median)", openAndDecode * 1000, "ms",
            String(
                format: "%+.1f %% vs copying plaintext records out and decoding (%.1f ms); one thread, no network",
                (openAndDecode / decodeOnly - 1) * 100, decodeOnly * 1000)),
        row("raw AEAD frame opening", rawOpenGBs, "GB/s", "the floor of the channel's cost on the receiver"),
        row("raw AEAD frame sealing", rawSealGBs, "GB/s", "the floor on the sender"),
        row(
            "handshakes a hub core completes", Double(handshakes) / responderSeconds, "handshakes/s",
            "responder work only"),
    ]
    try JSONValue.array(rows).jsonLine.write(toFile: path, atomically: true, encoding: .utf8)
}

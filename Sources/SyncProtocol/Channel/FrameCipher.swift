/// When a direction of the channel moves to a fresh key.
public struct RekeyPolicy: Sendable, Equatable {
    public var maxMessages: UInt64
    public var maxBytes: UInt64
    public var maxMilliseconds: UInt64

    public init(maxMessages: UInt64 = 1 << 20, maxBytes: UInt64 = 1 << 30, maxMilliseconds: UInt64 = 3_600_000) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
        self.maxMilliseconds = maxMilliseconds
    }
}

/// The kinds of frame, carried inside the authenticated plaintext.
enum FrameKind: UInt8 {
    case data = 0
    /// Data, and the last frame under the current key: both sides ratchet after it.
    case dataThenRekey = 1
    /// The orderly end of the channel.
    case final = 2
}

/// One direction's frame keys: XChaCha20-Poly1305 with the nonce `epoch ‖ counter ‖ 0…`.
/// A frame decrypts only under the exact counter the receiver expects, so a tampered,
/// reordered, replayed or dropped frame fails authentication. Rekeying ratchets the key
/// forward with BLAKE2b and zeroes the old one, so later compromise does not reveal earlier frames.
struct FrameKeys {
    private(set) var key: SecretBytes
    private(set) var epoch: UInt64 = 0
    private(set) var counter: UInt64 = 0
    static let additionalData = Array("loyalty-edge frame v1".utf8)

    init(key: SecretBytes) { self.key = key }

    var nonce: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        for index in 0..<8 {
            bytes[index] = UInt8(truncatingIfNeeded: epoch >> (56 - 8 * UInt64(index)))
            bytes[8 + index] = UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64(index)))
        }
        return bytes
    }

    mutating func advance() { counter += 1 }

    mutating func ratchet() {
        key = SecretBytes.derived(from: key, label: "rekey", transcript: [])
        epoch += 1
        counter = 0
    }
}

/// Seals frames for one direction and decides when to rekey.
struct FrameSender {
    private var keys: FrameKeys
    let policy: RekeyPolicy
    private var messagesUnderKey: UInt64 = 0
    private var bytesUnderKey: UInt64 = 0
    private var keyStartedAt: UInt64
    /// How many times this direction has rekeyed.
    var epoch: UInt64 { keys.epoch }

    init(key: SecretBytes, policy: RekeyPolicy, now: UInt64) {
        keys = FrameKeys(key: key)
        self.policy = policy
        keyStartedAt = now
    }

    mutating func seal(_ payload: [UInt8], kind requested: FrameKind, now: UInt64) -> [UInt8] {
        messagesUnderKey += 1
        bytesUnderKey += UInt64(payload.count)
        let due =
            messagesUnderKey >= policy.maxMessages || bytesUnderKey >= policy.maxBytes
            || now >= keyStartedAt + policy.maxMilliseconds
        let kind: FrameKind = requested == .data && due ? .dataThenRekey : requested
        let sealed = AEAD.seal(
            [kind.rawValue] + payload, key: keys.key, nonce: keys.nonce, additional: FrameKeys.additionalData)
        keys.advance()
        if kind == .dataThenRekey {
            keys.ratchet()
            messagesUnderKey = 0
            bytesUnderKey = 0
            keyStartedAt = now
        }
        return sealed
    }
}

/// Opens frames for one direction, in order.
struct FrameReceiver {
    private var keys: FrameKeys
    var epoch: UInt64 { keys.epoch }

    init(key: SecretBytes) { keys = FrameKeys(key: key) }

    /// The frame's kind and payload, or nil when it fails authentication.
    mutating func open(_ body: [UInt8]) -> (kind: FrameKind, payload: [UInt8])? {
        guard let plain = AEAD.open(body, key: keys.key, nonce: keys.nonce, additional: FrameKeys.additionalData),
            let first = plain.first, let kind = FrameKind(rawValue: first)
        else { return nil }
        keys.advance()
        if kind == .dataThenRekey { keys.ratchet() }
        return (kind, Array(plain.dropFirst()))
    }
}

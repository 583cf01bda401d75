import CSodium

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

/// The AEAD that protects frames, agreed in the handshake: AES-256-GCM where both ends have
/// AES-NI (libsodium offers it only there), XChaCha20-Poly1305 everywhere else.
public enum CipherSuite: UInt8, Sendable, CaseIterable {
    case xchacha20poly1305 = 1
    case aes256gcm = 2

    var bit: UInt8 { rawValue }

    /// The suites this machine can run, preferred first.
    public static var supported: [CipherSuite] {
        Sodium.ensureInitialized()
        return crypto_aead_aes256gcm_is_available() == 1 ? [.aes256gcm, .xchacha20poly1305] : [.xchacha20poly1305]
    }

    var nonceBytes: Int { self == .aes256gcm ? Int(crypto_aead_aes256gcm_NPUBBYTES) : 24 }
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
    let suite: CipherSuite
    private(set) var key: SecretBytes
    private(set) var epoch: UInt64 = 0
    private(set) var counter: UInt64 = 0
    static let additionalData = Array("loyalty-edge frame v1".utf8)

    init(key: SecretBytes, suite: CipherSuite) {
        self.key = key
        self.suite = suite
    }

    /// XChaCha20: `epoch:u64 ‖ counter:u64 ‖ 0^8`; AES-GCM: `epoch:u32 ‖ counter:u64`.
    var nonce: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: suite.nonceBytes)
        let epochBytes = suite == .aes256gcm ? 4 : 8
        for index in 0..<epochBytes {
            bytes[index] = UInt8(truncatingIfNeeded: epoch >> (8 * UInt64(epochBytes - 1 - index)))
        }
        for index in 0..<8 {
            bytes[epochBytes + index] = UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64(index)))
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

    init(key: SecretBytes, suite: CipherSuite, policy: RekeyPolicy, now: UInt64) {
        keys = FrameKeys(key: key, suite: suite)
        self.policy = policy
        keyStartedAt = now
    }

    /// The whole record for `payload`: `length:u32 ‖ kind ‖ AEAD(payload)`, built in one buffer.
    mutating func sealRecord(_ payload: [UInt8], kind requested: FrameKind, now: UInt64) -> [UInt8] {
        messagesUnderKey += 1
        bytesUnderKey += UInt64(payload.count)
        let due =
            messagesUnderKey >= policy.maxMessages || bytesUnderKey >= policy.maxBytes
            || now >= keyStartedAt + policy.maxMilliseconds
        let kind: FrameKind = requested == .data && due ? .dataThenRekey : requested
        let bodyLength = 1 + payload.count + AEAD.overhead
        let nonce = keys.nonce
        let additional = FrameKeys.additionalData + [kind.rawValue]
        let record = [UInt8](unsafeUninitializedCapacity: 4 + bodyLength) { buffer, count in
            let length = UInt32(bodyLength)
            buffer[0] = UInt8(length >> 24)
            buffer[1] = UInt8(length >> 16 & 0xFF)
            buffer[2] = UInt8(length >> 8 & 0xFF)
            buffer[3] = UInt8(length & 0xFF)
            buffer[4] = kind.rawValue
            let sealed = payload.withUnsafeBytes { plain in
                AEAD.seal(
                    plain, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[5...])),
                    key: keys.key, nonce: nonce, additional: additional, suite: keys.suite)
            }
            precondition(sealed == payload.count + AEAD.overhead)
            count = 4 + bodyLength
        }
        keys.advance()
        if kind == .dataThenRekey {
            keys.ratchet()
            messagesUnderKey = 0
            bytesUnderKey = 0
            keyStartedAt = now
        }
        return record
    }
}

/// Opens frames for one direction, in order.
struct FrameReceiver {
    private var keys: FrameKeys
    var epoch: UInt64 { keys.epoch }

    init(key: SecretBytes, suite: CipherSuite) { keys = FrameKeys(key: key, suite: suite) }

    /// The frame's kind and payload, or nil when it fails authentication.
    mutating func open(_ body: UnsafeRawBufferPointer) -> (kind: FrameKind, payload: [UInt8])? {
        guard body.count >= 1 + AEAD.overhead, let kind = FrameKind(rawValue: body[0]) else { return nil }
        guard
            let payload = AEAD.open(
                UnsafeRawBufferPointer(rebasing: body[1...]), key: keys.key, nonce: keys.nonce,
                additional: FrameKeys.additionalData + [kind.rawValue], suite: keys.suite)
        else { return nil }
        keys.advance()
        if kind == .dataThenRekey { keys.ratchet() }
        return (kind, payload)
    }
}

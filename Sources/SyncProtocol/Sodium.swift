import CSodium

/// A libsodium call that failed; carries the call's name.
public struct SodiumError: Error, Equatable, Sendable, CustomStringConvertible {
    public let operation: String
    public var description: String { "cryptographic operation failed: \(operation)" }
}

/// Thin wrappers over libsodium. Nothing outside this file and `SecureChannel` touches CSodium.
public enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    static func ensureInitialized() {
        precondition(initialized, "libsodium could not be initialised")
    }

    public static func randomBytes(_ count: Int) -> [UInt8] {
        ensureInitialized()
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return bytes
    }

    /// Overwrites the array's storage with zeros in a way the compiler cannot elide.
    public static func zero(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
    }

    /// BLAKE2b over the concatenation of `parts`, optionally keyed.
    public static func hash(_ parts: [[UInt8]], key: SecretBytes? = nil, length: Int = 32) -> [UInt8] {
        ensureInitialized()
        var output = [UInt8](repeating: 0, count: length)
        let stateBytes = crypto_generichash_statebytes()
        let state = UnsafeMutableRawPointer.allocate(byteCount: stateBytes, alignment: 64)
        defer {
            sodium_memzero(state, stateBytes)
            state.deallocate()
        }
        let opaque = OpaquePointer(state)
        let start = crypto_generichash_init(opaque, key?.pointer, key?.count ?? 0, length)
        precondition(start == 0, "crypto_generichash_init rejected its parameters")
        for part in parts {
            _ = part.withUnsafeBufferPointer { crypto_generichash_update(opaque, $0.baseAddress, UInt64($0.count)) }
        }
        let done = crypto_generichash_final(opaque, &output, length)
        precondition(done == 0, "crypto_generichash_final failed")
        return output
    }

    /// Constant-time comparison.
    public static func equal(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        return lhs.withUnsafeBufferPointer { l in
            rhs.withUnsafeBufferPointer { r in sodium_memcmp(l.baseAddress, r.baseAddress, l.count) == 0 }
        }
    }
}

/// Secret key material in memory of its own, zeroed with `sodium_memzero` when released.
public final class SecretBytes: @unchecked Sendable {
    // Immutable after init; the storage is only read, so sharing across threads is safe.
    private let storage: UnsafeMutableRawBufferPointer

    public var count: Int { storage.count }
    /// Stable address of the key bytes, for the libsodium calls in this module.
    var pointer: UnsafeMutablePointer<UInt8> { storage.baseAddress!.assumingMemoryBound(to: UInt8.self) }

    init(count: Int) {
        storage = .allocate(byteCount: count, alignment: 16)
        storage.initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// Copies `bytes` and zeroes the caller's array.
    public convenience init(consuming bytes: inout [UInt8]) {
        self.init(count: bytes.count)
        storage.copyBytes(from: bytes)
        Sodium.zero(&bytes)
    }

    func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(storage)
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage))
    }

    deinit {
        sodium_memzero(storage.baseAddress, storage.count)
        storage.deallocate()
    }
}

/// An Ed25519 public key: a node's long-term identity.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == PublicKey.byteCount else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        self.bytes = bytes
    }

    public var hex: String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
    public var description: String { hex }

    /// Checks an Ed25519 signature made with the matching secret key.
    public func verify(signature: [UInt8], message: [UInt8]) -> Bool {
        Sodium.ensureInitialized()
        guard signature.count == Int(crypto_sign_BYTES) else { return false }
        return crypto_sign_verify_detached(signature, message, UInt64(message.count), bytes) == 0
    }
}

/// A node's long-term Ed25519 key pair. The secret half lives in `SecretBytes`.
public final class SigningKeyPair: Sendable {
    public static let secretByteCount = Int(crypto_sign_SECRETKEYBYTES)
    public let publicKey: PublicKey
    private let secret: SecretBytes

    public static func generate() -> SigningKeyPair {
        Sodium.ensureInitialized()
        var pk = [UInt8](repeating: 0, count: PublicKey.byteCount)
        let secret = SecretBytes(count: secretByteCount)
        let rc = crypto_sign_keypair(&pk, secret.pointer)
        precondition(rc == 0, "crypto_sign_keypair failed")
        return SigningKeyPair(publicKey: PublicKey(bytes: pk)!, secret: secret)
    }

    /// A key pair from a 32-byte seed (for test vectors; real keys come from `generate`).
    public static func fromSeed(_ seed: [UInt8]) -> SigningKeyPair {
        Sodium.ensureInitialized()
        precondition(seed.count == Int(crypto_sign_SEEDBYTES))
        var pk = [UInt8](repeating: 0, count: PublicKey.byteCount)
        let secret = SecretBytes(count: secretByteCount)
        let rc = crypto_sign_seed_keypair(&pk, secret.pointer, seed)
        precondition(rc == 0, "crypto_sign_seed_keypair failed")
        return SigningKeyPair(publicKey: PublicKey(bytes: pk)!, secret: secret)
    }

    private init(publicKey: PublicKey, secret: SecretBytes) {
        self.publicKey = publicKey
        self.secret = secret
    }

    /// Loads a 64-byte Ed25519 secret key; the caller's array is zeroed.
    public convenience init(secretKey bytes: inout [UInt8]) throws(SodiumError) {
        Sodium.ensureInitialized()
        guard bytes.count == SigningKeyPair.secretByteCount else {
            Sodium.zero(&bytes)
            throw SodiumError(operation: "load key: expected \(SigningKeyPair.secretByteCount) bytes")
        }
        let secret = SecretBytes(consuming: &bytes)
        var pk = [UInt8](repeating: 0, count: PublicKey.byteCount)
        let rc = crypto_sign_ed25519_sk_to_pk(&pk, secret.pointer)
        guard rc == 0 else { throw SodiumError(operation: "crypto_sign_ed25519_sk_to_pk") }
        self.init(publicKey: PublicKey(bytes: pk)!, secret: secret)
    }

    public func sign(_ message: [UInt8]) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: Int(crypto_sign_BYTES))
        let rc = crypto_sign_detached(&signature, nil, message, UInt64(message.count), secret.pointer)
        precondition(rc == 0, "crypto_sign_detached failed")
        return signature
    }

    /// The secret key bytes, for writing a key file. The caller zeroes the array after use.
    public func exportSecretKey() -> [UInt8] {
        secret.withUnsafeBytes { Array($0) }
    }
}

/// An ephemeral X25519 key pair for one handshake (`crypto_kx`).
final class EphemeralKeyPair {
    let publicKey: [UInt8]
    let secret: SecretBytes

    init() {
        Sodium.ensureInitialized()
        var pk = [UInt8](repeating: 0, count: Int(crypto_kx_PUBLICKEYBYTES))
        secret = SecretBytes(count: Int(crypto_kx_SECRETKEYBYTES))
        let rc = crypto_kx_keypair(&pk, secret.pointer)
        precondition(rc == 0, "crypto_kx_keypair failed")
        publicKey = pk
    }

    /// Test-vector constructor: a key pair from a fixed 32-byte seed.
    init(seed: [UInt8]) {
        Sodium.ensureInitialized()
        precondition(seed.count == Int(crypto_kx_SEEDBYTES))
        var pk = [UInt8](repeating: 0, count: Int(crypto_kx_PUBLICKEYBYTES))
        secret = SecretBytes(count: Int(crypto_kx_SECRETKEYBYTES))
        let rc = crypto_kx_seed_keypair(&pk, secret.pointer, seed)
        precondition(rc == 0, "crypto_kx_seed_keypair failed")
        publicKey = pk
    }

    /// Session keys (receive, transmit) as the client (the initiator) of `crypto_kx`.
    func clientSessionKeys(serverPublicKey: [UInt8]) throws(SodiumError) -> (rx: SecretBytes, tx: SecretBytes) {
        try sessionKeys(peer: serverPublicKey, client: true)
    }

    func serverSessionKeys(clientPublicKey: [UInt8]) throws(SodiumError) -> (rx: SecretBytes, tx: SecretBytes) {
        try sessionKeys(peer: clientPublicKey, client: false)
    }

    private func sessionKeys(peer: [UInt8], client: Bool) throws(SodiumError) -> (rx: SecretBytes, tx: SecretBytes) {
        guard peer.count == Int(crypto_kx_PUBLICKEYBYTES) else {
            throw SodiumError(operation: "crypto_kx: bad peer key")
        }
        let rx = SecretBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
        let tx = SecretBytes(count: Int(crypto_kx_SESSIONKEYBYTES))
        let rc =
            client
            ? crypto_kx_client_session_keys(rx.pointer, tx.pointer, publicKey, secret.pointer, peer)
            : crypto_kx_server_session_keys(rx.pointer, tx.pointer, publicKey, secret.pointer, peer)
        guard rc == 0 else {
            throw SodiumError(operation: client ? "crypto_kx_client_session_keys" : "crypto_kx_server_session_keys")
        }
        return (rx, tx)
    }
}

/// XChaCha20-Poly1305 (IETF) one-shot AEAD, used for the encrypted handshake payloads.
enum AEAD {
    static let overhead = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)

    static func seal(_ plaintext: [UInt8], key: SecretBytes, nonce: [UInt8], additional: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: plaintext.count + overhead)
        var length: UInt64 = 0
        let rc = crypto_aead_xchacha20poly1305_ietf_encrypt(
            &output, &length, plaintext, UInt64(plaintext.count), additional, UInt64(additional.count), nil, nonce,
            key.pointer)
        precondition(rc == 0, "crypto_aead_xchacha20poly1305_ietf_encrypt failed")
        return output
    }

    static func open(_ ciphertext: [UInt8], key: SecretBytes, nonce: [UInt8], additional: [UInt8]) -> [UInt8]? {
        guard ciphertext.count >= overhead else { return nil }
        var output = [UInt8](repeating: 0, count: ciphertext.count - overhead)
        var length: UInt64 = 0
        let rc = crypto_aead_xchacha20poly1305_ietf_decrypt(
            &output, &length, nil, ciphertext, UInt64(ciphertext.count), additional, UInt64(additional.count), nonce,
            key.pointer)
        return rc == 0 ? output : nil
    }

    /// Encrypts `plaintext` into `output` (which must hold plaintext + overhead bytes).
    static func seal(
        _ plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, key: SecretBytes,
        nonce: [UInt8], additional: [UInt8], suite: CipherSuite = .xchacha20poly1305
    ) -> Int {
        var length: UInt64 = 0
        let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let input = plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let rc =
            suite == .aes256gcm
            ? crypto_aead_aes256gcm_encrypt(
                out, &length, input, UInt64(plaintext.count), additional, UInt64(additional.count), nil, nonce,
                key.pointer)
            : crypto_aead_xchacha20poly1305_ietf_encrypt(
                out, &length, input, UInt64(plaintext.count), additional, UInt64(additional.count), nil, nonce,
                key.pointer)
        precondition(rc == 0, "AEAD encryption failed")
        return Int(length)
    }

    /// Decrypts straight from a buffer; nil when authentication fails.
    static func open(
        _ ciphertext: UnsafeRawBufferPointer, key: SecretBytes, nonce: [UInt8], additional: [UInt8],
        suite: CipherSuite = .xchacha20poly1305
    ) -> [UInt8]? {
        guard ciphertext.count >= overhead else { return nil }
        var failed = false
        let output = [UInt8](unsafeUninitializedCapacity: ciphertext.count - overhead) { buffer, count in
            var length: UInt64 = 0
            let input = ciphertext.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let rc =
                suite == .aes256gcm
                ? crypto_aead_aes256gcm_decrypt(
                    buffer.baseAddress, &length, nil, input, UInt64(ciphertext.count), additional,
                    UInt64(additional.count), nonce, key.pointer)
                : crypto_aead_xchacha20poly1305_ietf_decrypt(
                    buffer.baseAddress, &length, nil, input, UInt64(ciphertext.count), additional,
                    UInt64(additional.count), nonce, key.pointer)
            failed = rc != 0
            count = failed ? 0 : Int(length)
        }
        return failed ? nil : output
    }

    static var zeroNonce: [UInt8] { [UInt8](repeating: 0, count: Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)) }
}

/// Why a channel closed. Logged by the driver; a cut connection is told apart from a close.
public enum ChannelCloseReason: Equatable, Sendable, CustomStringConvertible {
    case oversizedRecord(length: Int, limit: Int)
    case malformedHandshake(String)
    case versionMismatch(UInt16)
    case authenticationFailed(String)
    case unexpectedPeerKey(PublicKey)
    case peerNotAllowed(PublicKey)
    /// A first message seen before, or a peer timestamp that did not move forward.
    case replayedHandshake(String)
    /// A frame failed authentication: tampered, reordered, replayed or dropped.
    case frameRejected
    /// The peer sent its final frame: an orderly close.
    case closedByPeer

    public var description: String {
        switch self {
        case .oversizedRecord(let length, let limit): return "record of \(length) bytes exceeds the limit of \(limit)"
        case .malformedHandshake(let why): return "malformed handshake: \(why)"
        case .versionMismatch(let version):
            return "peer speaks channel version \(version), this node speaks \(syncProtocolVersion)"
        case .authenticationFailed(let why): return "handshake authentication failed: \(why)"
        case .unexpectedPeerKey(let key): return "peer key \(key) is not the pinned hub key"
        case .peerNotAllowed(let key): return "store key \(key) is not enrolled or was revoked"
        case .replayedHandshake(let why): return "replayed handshake refused: \(why)"
        case .frameRejected: return "frame failed authentication (tampered, reordered, replayed or truncated)"
        case .closedByPeer: return "peer closed the channel"
        }
    }
}

/// What the driver of a `SecureChannel` must do.
public enum ChannelEvent: Equatable, Sendable {
    /// Write these bytes to the socket.
    case send([UInt8])
    /// Responder only: decide whether this long-term key may connect, then call `peerVerified`.
    case verifyPeer(PublicKey)
    /// Both sides authenticated; application frames may flow.
    case established(peer: PublicKey)
    /// One decrypted application message.
    case deliver([UInt8])
    /// The channel is finished; close the socket.
    case close(ChannelCloseReason)
}

/// The encrypted, mutually authenticated channel between a store and the hub, as a sans-IO
/// state machine: feed it received bytes, execute the events it returns. Time is an input.
///
/// Handshake (SIGMA-I over libsodium; docs/channel.md has the details and a test vector):
/// 1. I → R: `"LYC1" ‖ version ‖ timestamp ‖ eI`
/// 2. R → I: `eR ‖ AEAD_kR(sR ‖ Sig_sR("resp" ‖ h0 ‖ sR))`, h0 = H(domain ‖ msg1 ‖ eR)
/// 3. I → R: `AEAD_kI(sI ‖ Sig_sI("init" ‖ h1 ‖ sI))`, h1 = H(h0 ‖ sR)
/// then frames under keys derived from the ephemeral exchange and h2 = H(h1 ‖ sI).
/// Every record on the wire is a big-endian u32 length and a body of at most 1 MiB + 17.
public final class SecureChannel {
    public static let maxMessageBytes = WireVersion.maxMessageBytes
    static let magic: [UInt8] = Array("LYC1".utf8)
    static let domain: [UInt8] = Array("loyalty-edge channel v1".utf8)
    static let message1Bytes = 4 + 2 + 8 + 1 + 32
    static let message2Bytes = 32 + 1 + 32 + 64 + AEAD.overhead
    static let message3Bytes = 32 + 64 + AEAD.overhead

    private enum State {
        case initiatorAwaitingResponse(ephemeral: EphemeralKeyPair, message1: [UInt8], offered: UInt8)
        case responderAwaitingHello
        case responderAwaitingIdentity(
            h0: [UInt8], h1: [UInt8], timestamp: UInt64, keys: DirectionKeys, suite: CipherSuite)
        case responderVerifying(peer: PublicKey, session: DirectionKeys, suite: CipherSuite)
        case open(peer: PublicKey)
        case closed
    }

    /// A pair of keys, one per direction (initiator → responder, responder → initiator).
    struct DirectionKeys {
        let toResponder: SecretBytes
        let toInitiator: SecretBytes
    }

    private let identity: SigningKeyPair
    private let pinnedPeer: PublicKey?
    private let guardian: HandshakeGuard?
    private let policy: RekeyPolicy
    private var state: State
    private var inbound: [UInt8] = []
    private var readIndex = 0
    private var sender: FrameSender?
    private var receiver: FrameReceiver?
    private var fixedEphemeral: EphemeralKeyPair?
    /// The peer's identity once authenticated.
    public private(set) var peer: PublicKey?
    /// For tests and the published test vector: the data keys once derived.
    private(set) var dataKeys: DirectionKeys?
    /// The frame cipher agreed in the handshake.
    public private(set) var suite: CipherSuite?

    private init(
        identity: SigningKeyPair, pinnedPeer: PublicKey?, guardian: HandshakeGuard?, policy: RekeyPolicy, state: State
    ) {
        self.identity = identity
        self.pinnedPeer = pinnedPeer
        self.guardian = guardian
        self.policy = policy
        self.state = state
    }

    /// The connecting side (a store). Returns the channel and the first bytes to send.
    public static func initiator(
        identity: SigningKeyPair, pinnedPeer: PublicKey, now: UInt64, policy: RekeyPolicy = RekeyPolicy(),
        suites: [CipherSuite] = CipherSuite.supported
    ) -> (SecureChannel, [UInt8]) {
        initiator(
            identity: identity, pinnedPeer: pinnedPeer, now: now, policy: policy, suites: suites,
            ephemeral: EphemeralKeyPair())
    }

    static func initiator(
        identity: SigningKeyPair, pinnedPeer: PublicKey, now: UInt64, policy: RekeyPolicy, suites: [CipherSuite],
        ephemeral: EphemeralKeyPair
    ) -> (SecureChannel, [UInt8]) {
        let offered = suites.reduce(UInt8(0)) { $0 | $1.bit }
        var writer = ByteWriter(capacity: message1Bytes)
        writer.writeRaw(magic)
        writer.write(syncProtocolVersion)
        writer.write(now)
        writer.write(offered)
        writer.writeRaw(ephemeral.publicKey)
        let channel = SecureChannel(
            identity: identity, pinnedPeer: pinnedPeer, guardian: nil, policy: policy,
            state: .initiatorAwaitingResponse(ephemeral: ephemeral, message1: writer.bytes, offered: offered))
        return (channel, record(writer.bytes))
    }

    /// The accepting side (the hub). `guardian` is shared by all of the hub's handshakes.
    public static func responder(
        identity: SigningKeyPair, guardian: HandshakeGuard, policy: RekeyPolicy = RekeyPolicy()
    ) -> SecureChannel {
        SecureChannel(
            identity: identity, pinnedPeer: nil, guardian: guardian, policy: policy, state: .responderAwaitingHello)
    }

    static func responder(
        identity: SigningKeyPair, guardian: HandshakeGuard, policy: RekeyPolicy, ephemeral: EphemeralKeyPair
    ) -> SecureChannel {
        let channel = responder(identity: identity, guardian: guardian, policy: policy)
        channel.fixedEphemeral = ephemeral
        return channel
    }

    public var isOpen: Bool {
        if case .open = state { return true }
        return false
    }

    public var isClosed: Bool {
        if case .closed = state { return true }
        return false
    }

    /// How many times this side's sending key has been replaced.
    public var sendEpoch: UInt64 { sender?.epoch ?? 0 }
    public var receiveEpoch: UInt64 { receiver?.epoch ?? 0 }

    /// Feeds bytes read from the socket.
    public func receive(_ bytes: [UInt8], now: UInt64 = 0) -> [ChannelEvent] {
        guard !isClosed else { return [] }
        if inbound.isEmpty { inbound = bytes } else { inbound += bytes }
        return processRecords(now: now)
    }

    /// The responder's answer to `.verifyPeer`.
    public func peerVerified(allowed: Bool, now: UInt64 = 0) -> [ChannelEvent] {
        guard case .responderVerifying(let peer, let session, let suite) = state else { return [] }
        guard allowed else { return fail(.peerNotAllowed(peer)) }
        sender = FrameSender(key: session.toInitiator, suite: suite, policy: policy, now: now)
        receiver = FrameReceiver(key: session.toResponder, suite: suite)
        state = .open(peer: peer)
        return [.established(peer: peer)] + processRecords(now: now)
    }

    /// Encrypts one application message into a record ready to send.
    public func seal(_ message: [UInt8], now: UInt64 = 0) -> [UInt8]? {
        guard isOpen, message.count <= Self.maxMessageBytes, sender != nil else { return nil }
        return sender!.sealRecord(message, kind: .data, now: now)
    }

    /// The final frame: tells the peer this is an orderly close, then the channel is closed.
    public func sealFinal(now: UInt64 = 0) -> [UInt8]? {
        guard isOpen, sender != nil else { return nil }
        let record = sender!.sealRecord([], kind: .final, now: now)
        state = .closed
        return record
    }

    // MARK: - Records

    static func record(_ body: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: body.count + 4)
        writer.write(UInt32(body.count))
        writer.writeRaw(body)
        return writer.bytes
    }

    static let recordLimit = maxMessageBytes + 1 + AEAD.overhead

    private func processRecords(now: UInt64) -> [ChannelEvent] {
        var events: [ChannelEvent] = []
        while !isClosed {
            if case .responderVerifying = state { break }
            let available = inbound.count - readIndex
            guard available >= 4 else { break }
            let length =
                Int(inbound[readIndex]) << 24 | Int(inbound[readIndex + 1]) << 16 | Int(inbound[readIndex + 2]) << 8
                | Int(inbound[readIndex + 3])
            guard length <= Self.recordLimit else {
                events += fail(.oversizedRecord(length: length, limit: Self.recordLimit))
                break
            }
            guard available >= 4 + length else { break }
            let start = readIndex + 4
            readIndex = start + length
            if case .open = state {
                // The hot path: decrypt straight out of the receive buffer.
                let opened = inbound.withUnsafeBytes { buffer in
                    receiver?.open(UnsafeRawBufferPointer(rebasing: buffer[start..<(start + length)]))
                }
                guard let (kind, payload) = opened else {
                    events += fail(.frameRejected)
                    break
                }
                if kind == .final {
                    events += fail(.closedByPeer)
                    break
                }
                events.append(.deliver(payload))
            } else {
                events += handle(record: Array(inbound[start..<(start + length)]), now: now)
            }
        }
        if readIndex == inbound.count {
            inbound.removeAll(keepingCapacity: false)
            readIndex = 0
        } else if readIndex > 0 {
            inbound.removeFirst(readIndex)
            readIndex = 0
        }
        return events
    }

    private func fail(_ reason: ChannelCloseReason) -> [ChannelEvent] {
        state = .closed
        sender = nil
        receiver = nil
        return [.close(reason)]
    }

    private func handle(record body: [UInt8], now: UInt64) -> [ChannelEvent] {
        switch state {
        case .responderAwaitingHello:
            return handleHello(body)
        case .initiatorAwaitingResponse(let ephemeral, let message1, let offered):
            return handleResponse(body, ephemeral: ephemeral, message1: message1, offered: offered, now: now)
        case .responderAwaitingIdentity(let h0, let h1, let timestamp, let keys, let suite):
            return handleIdentity(body, h0: h0, h1: h1, timestamp: timestamp, keys: keys, suite: suite)
        case .responderVerifying, .closed, .open:
            return []
        }
    }

    private func handleHello(_ body: [UInt8]) -> [ChannelEvent] {
        guard body.count == Self.message1Bytes, Array(body[0..<4]) == Self.magic else {
            return fail(.malformedHandshake("first message is not a channel hello"))
        }
        var reader = ByteReader(Array(body[4...]))
        guard let version = try? reader.readUInt16(), let timestamp = try? reader.readUInt64(),
            let offered = try? reader.readUInt8(), let initiatorEphemeral = try? reader.readRaw(32)
        else { return fail(.malformedHandshake("truncated hello")) }
        guard version == syncProtocolVersion else { return fail(.versionMismatch(version)) }
        guard let suite = CipherSuite.supported.first(where: { offered & $0.bit != 0 }) else {
            return fail(.malformedHandshake("no cipher suite in common (offered \(offered))"))
        }
        guard guardian?.admitFirstMessage(ephemeral: initiatorEphemeral) ?? true else {
            return fail(.replayedHandshake("this first message was seen before"))
        }
        let ephemeral = fixedEphemeral ?? EphemeralKeyPair()
        fixedEphemeral = nil
        guard let (rx, tx) = try? ephemeral.serverSessionKeys(clientPublicKey: initiatorEphemeral) else {
            return fail(.malformedHandshake("invalid ephemeral key"))
        }
        let keys = DirectionKeys(toResponder: rx, toInitiator: tx)
        let h0 = Sodium.hash([Self.domain, body, ephemeral.publicKey, [suite.rawValue]])
        let signed = Array("resp".utf8) + h0 + identity.publicKey.bytes
        let payload = identity.publicKey.bytes + identity.sign(signed)
        let key = SecretBytes.derived(from: keys.toInitiator, label: "hs", transcript: h0)
        let message2 =
            ephemeral.publicKey + [suite.rawValue] + AEAD.seal(payload, key: key, nonce: AEAD.zeroNonce, additional: h0)
        let h1 = Sodium.hash([h0, identity.publicKey.bytes])
        state = .responderAwaitingIdentity(h0: h0, h1: h1, timestamp: timestamp, keys: keys, suite: suite)
        return [.send(Self.record(message2))]
    }

    private func handleResponse(
        _ body: [UInt8], ephemeral: EphemeralKeyPair, message1: [UInt8], offered: UInt8, now: UInt64
    ) -> [ChannelEvent] {
        guard body.count == Self.message2Bytes else { return fail(.malformedHandshake("response has the wrong size")) }
        let responderEphemeral = Array(body[0..<32])
        guard let suite = CipherSuite(rawValue: body[32]), offered & suite.bit != 0 else {
            return fail(.malformedHandshake("hub chose a cipher suite that was not offered"))
        }
        guard let (rx, tx) = try? ephemeral.clientSessionKeys(serverPublicKey: responderEphemeral) else {
            return fail(.malformedHandshake("invalid ephemeral key"))
        }
        let keys = DirectionKeys(toResponder: tx, toInitiator: rx)
        let h0 = Sodium.hash([Self.domain, message1, responderEphemeral, [suite.rawValue]])
        let key = SecretBytes.derived(from: keys.toInitiator, label: "hs", transcript: h0)
        guard let payload = AEAD.open(Array(body[33...]), key: key, nonce: AEAD.zeroNonce, additional: h0) else {
            return fail(.authenticationFailed("response does not decrypt"))
        }
        let responderKey = PublicKey(bytes: Array(payload[0..<32]))!
        guard responderKey == pinnedPeer else { return fail(.unexpectedPeerKey(responderKey)) }
        guard
            responderKey.verify(
                signature: Array(payload[32..<96]), message: Array("resp".utf8) + h0 + responderKey.bytes)
        else { return fail(.authenticationFailed("responder signature invalid")) }
        let h1 = Sodium.hash([h0, responderKey.bytes])
        let identityPayload =
            identity.publicKey.bytes + identity.sign(Array("init".utf8) + h1 + identity.publicKey.bytes)
        let sealKey = SecretBytes.derived(from: keys.toResponder, label: "hs", transcript: h0)
        let message3 = AEAD.seal(identityPayload, key: sealKey, nonce: AEAD.zeroNonce, additional: h1)
        let session = Self.dataKeys(keys, h2: Sodium.hash([h1, identity.publicKey.bytes]))
        dataKeys = session
        self.suite = suite
        sender = FrameSender(key: session.toResponder, suite: suite, policy: policy, now: now)
        receiver = FrameReceiver(key: session.toInitiator, suite: suite)
        peer = responderKey
        state = .open(peer: responderKey)
        return [.send(Self.record(message3)), .established(peer: responderKey)]
    }

    private func handleIdentity(
        _ body: [UInt8], h0: [UInt8], h1: [UInt8], timestamp: UInt64, keys: DirectionKeys, suite: CipherSuite
    ) -> [ChannelEvent] {
        guard body.count == Self.message3Bytes else { return fail(.malformedHandshake("identity has the wrong size")) }
        let key = SecretBytes.derived(from: keys.toResponder, label: "hs", transcript: h0)
        guard let payload = AEAD.open(body, key: key, nonce: AEAD.zeroNonce, additional: h1) else {
            return fail(.authenticationFailed("identity does not decrypt"))
        }
        let initiatorKey = PublicKey(bytes: Array(payload[0..<32]))!
        guard
            initiatorKey.verify(
                signature: Array(payload[32..<96]), message: Array("init".utf8) + h1 + initiatorKey.bytes)
        else { return fail(.authenticationFailed("initiator signature invalid")) }
        // The timestamp was bound into h0, which the initiator just signed: it is authentic.
        guard guardian?.admit(peer: initiatorKey, timestamp: timestamp) ?? true else {
            return fail(.replayedHandshake("timestamp \(timestamp) is not newer than this store's last handshake"))
        }
        let session = Self.dataKeys(keys, h2: Sodium.hash([h1, initiatorKey.bytes]))
        dataKeys = session
        self.suite = suite
        peer = initiatorKey
        state = .responderVerifying(peer: initiatorKey, session: session, suite: suite)
        return [.verifyPeer(initiatorKey)]
    }

    private static func dataKeys(_ keys: DirectionKeys, h2: [UInt8]) -> DirectionKeys {
        DirectionKeys(
            toResponder: SecretBytes.derived(from: keys.toResponder, label: "data", transcript: h2),
            toInitiator: SecretBytes.derived(from: keys.toInitiator, label: "data", transcript: h2))
    }
}

extension SecretBytes {
    /// A 32-byte key: BLAKE2b keyed with `key` over `label ‖ transcript`.
    static func derived(from key: SecretBytes, label: String, transcript: [UInt8]) -> SecretBytes {
        var bytes = Sodium.hash([Array(label.utf8), transcript], key: key)
        return SecretBytes(consuming: &bytes)
    }
}

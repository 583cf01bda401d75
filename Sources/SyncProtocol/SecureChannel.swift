/// Why a channel closed. Logged by the driver; a cut connection is told apart from a close.
public enum ChannelCloseReason: Equatable, Sendable, CustomStringConvertible {
    case oversizedRecord(length: Int, limit: Int)
    case malformedHandshake(String)
    case versionMismatch(UInt16)
    case authenticationFailed(String)
    case unexpectedPeerKey(PublicKey)
    case peerNotAllowed(PublicKey)
    /// A frame failed authentication: tampered, truncated, reordered or replayed.
    case frameRejected
    /// The peer sent its final frame: an orderly close.
    case closedByPeer
    case closedLocally

    public var description: String {
        switch self {
        case .oversizedRecord(let length, let limit): return "record of \(length) bytes exceeds the limit of \(limit)"
        case .malformedHandshake(let why): return "malformed handshake: \(why)"
        case .versionMismatch(let version):
            return "peer speaks channel version \(version), we speak \(syncProtocolVersion)"
        case .authenticationFailed(let why): return "handshake authentication failed: \(why)"
        case .unexpectedPeerKey(let key): return "peer key \(key) is not the pinned key"
        case .peerNotAllowed(let key): return "peer key \(key) is not enrolled or was revoked"
        case .frameRejected: return "frame failed authentication (tampered, reordered, replayed or truncated)"
        case .closedByPeer: return "peer closed the channel"
        case .closedLocally: return "channel closed locally"
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
/// state machine: feed it received bytes, execute the events it returns.
///
/// Handshake (SIGMA-I over libsodium; see docs/channel.md):
/// 1. I → R: `"LYC1" ‖ version ‖ eI`
/// 2. R → I: `eR ‖ AEAD_kR(sR ‖ Sig_sR("resp" ‖ h0 ‖ sR))`, h0 = H(domain ‖ msg1 ‖ eR)
/// 3. I → R: `AEAD_kI(sI ‖ Sig_sI("init" ‖ h1 ‖ sI))`, h1 = H(h0 ‖ sR)
/// then each side sends the header of its `crypto_secretstream` keyed from h2 = H(h1 ‖ sI).
/// Every record on the wire is a big-endian u32 length and a body.
public final class SecureChannel {
    public static let maxMessageBytes = 1 << 20
    static let magic: [UInt8] = Array("LYC1".utf8)
    static let domain: [UInt8] = Array("loyalty-edge channel v1".utf8)
    static let message1Bytes = 4 + 2 + 32
    static let message2Bytes = 32 + 32 + 64 + AEAD.overhead
    static let message3Bytes = 32 + 64 + AEAD.overhead

    private enum State {
        case initiatorAwaitingResponse(ephemeral: EphemeralKeyPair, message1: [UInt8])
        case initiatorAwaitingHeader(session: SessionKeys)
        case responderAwaitingHello
        case responderAwaitingIdentity(ephemeral: EphemeralKeyPair, h0: [UInt8], h1: [UInt8], keys: HandshakeKeys)
        case responderVerifying(peer: PublicKey, session: SessionKeys)
        case responderAwaitingHeader(peer: PublicKey, session: SessionKeys)
        case open(peer: PublicKey)
        case closed
    }

    private struct HandshakeKeys {
        let initiatorToResponder: SecretBytes
        let responderToInitiator: SecretBytes
    }

    private struct SessionKeys {
        let send: SecretBytes
        let receive: SecretBytes
    }

    private let identity: SigningKeyPair
    private let pinnedPeer: PublicKey?
    private var state: State
    private var inbound: [UInt8] = []
    private var readIndex = 0
    private var sender: SecretStreamPush?
    private var receiver: SecretStreamPull?
    /// The peer's identity once authenticated.
    public private(set) var peer: PublicKey?

    private init(identity: SigningKeyPair, pinnedPeer: PublicKey?, state: State) {
        self.identity = identity
        self.pinnedPeer = pinnedPeer
        self.state = state
    }

    /// The connecting side (a store). Returns the channel and the first bytes to send.
    public static func initiator(identity: SigningKeyPair, pinnedPeer: PublicKey) -> (SecureChannel, [UInt8]) {
        initiator(identity: identity, pinnedPeer: pinnedPeer, ephemeral: EphemeralKeyPair())
    }

    static func initiator(identity: SigningKeyPair, pinnedPeer: PublicKey, ephemeral: EphemeralKeyPair) -> (
        SecureChannel, [UInt8]
    ) {
        var message = magic
        message.append(UInt8(syncProtocolVersion >> 8))
        message.append(UInt8(syncProtocolVersion & 0xFF))
        message += ephemeral.publicKey
        let channel = SecureChannel(
            identity: identity, pinnedPeer: pinnedPeer,
            state: .initiatorAwaitingResponse(ephemeral: ephemeral, message1: message))
        return (channel, record(message))
    }

    /// The accepting side (the hub).
    public static func responder(identity: SigningKeyPair) -> SecureChannel {
        SecureChannel(identity: identity, pinnedPeer: nil, state: .responderAwaitingHello)
    }

    // Test hook: a responder with a fixed ephemeral key, for the published test vector.
    private var fixedResponderEphemeral: EphemeralKeyPair?
    static func responder(identity: SigningKeyPair, ephemeral: EphemeralKeyPair) -> SecureChannel {
        let channel = SecureChannel(identity: identity, pinnedPeer: nil, state: .responderAwaitingHello)
        channel.fixedResponderEphemeral = ephemeral
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

    /// Feeds bytes read from the socket.
    public func receive(_ bytes: [UInt8]) -> [ChannelEvent] {
        guard !isClosed else { return [] }
        inbound += bytes
        return processRecords()
    }

    /// The responder's answer to `.verifyPeer`.
    public func peerVerified(allowed: Bool) -> [ChannelEvent] {
        guard case .responderVerifying(let peer, let session) = state else { return [] }
        guard allowed else { return fail(.peerNotAllowed(peer)) }
        var events: [ChannelEvent] = []
        do {
            let push = try SecretStreamPush(key: session.send)
            sender = push
            events.append(.send(Self.record(push.header)))
        } catch {
            return events + fail(.authenticationFailed("\(error)"))
        }
        state = .responderAwaitingHeader(peer: peer, session: session)
        return events + processRecords()
    }

    /// Encrypts one application message into a record ready to send.
    public func seal(_ message: [UInt8]) -> [UInt8]? {
        guard isOpen, let sender, message.count <= Self.maxMessageBytes else { return nil }
        return Self.record(sender.push(message, final: false))
    }

    /// The final frame: tells the peer this is an orderly close, then the channel is closed.
    public func sealFinal() -> [UInt8]? {
        guard isOpen, let sender else { return nil }
        state = .closed
        return Self.record(sender.push([], final: true))
    }

    // MARK: - Records

    static func record(_ body: [UInt8]) -> [UInt8] {
        let length = UInt32(body.count)
        return [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + body
    }

    private var recordLimit: Int { Self.maxMessageBytes + SecretStreamPush.overhead }

    private func processRecords() -> [ChannelEvent] {
        var events: [ChannelEvent] = []
        while !isClosed {
            if case .responderVerifying = state { break }
            let available = inbound.count - readIndex
            guard available >= 4 else { break }
            let length =
                Int(inbound[readIndex]) << 24 | Int(inbound[readIndex + 1]) << 16 | Int(inbound[readIndex + 2]) << 8
                | Int(inbound[readIndex + 3])
            guard length <= recordLimit else {
                events += fail(.oversizedRecord(length: length, limit: recordLimit))
                break
            }
            guard available >= 4 + length else { break }
            let body = Array(inbound[(readIndex + 4)..<(readIndex + 4 + length)])
            readIndex += 4 + length
            events += handle(record: body)
        }
        if readIndex > 0 && (readIndex == inbound.count || readIndex > 65536) {
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

    private func handle(record body: [UInt8]) -> [ChannelEvent] {
        switch state {
        case .responderAwaitingHello:
            return handleHello(body)
        case .initiatorAwaitingResponse(let ephemeral, let message1):
            return handleResponse(body, ephemeral: ephemeral, message1: message1)
        case .responderAwaitingIdentity(_, _, let h1, let keys):
            return handleIdentity(body, h1: h1, keys: keys)
        case .initiatorAwaitingHeader(let session):
            guard let peer, let pull = try? SecretStreamPull(key: session.receive, header: body) else {
                return fail(.malformedHandshake("bad stream header"))
            }
            receiver = pull
            state = .open(peer: peer)
            return [.established(peer: peer)]
        case .responderAwaitingHeader(let peer, let session):
            guard let pull = try? SecretStreamPull(key: session.receive, header: body) else {
                return fail(.malformedHandshake("bad stream header"))
            }
            receiver = pull
            state = .open(peer: peer)
            return [.established(peer: peer)]
        case .open:
            guard let receiver, let (message, final) = receiver.pull(body) else { return fail(.frameRejected) }
            if final { return fail(.closedByPeer) }
            return [.deliver(message)]
        case .responderVerifying, .closed:
            return []
        }
    }

    private func handleHello(_ body: [UInt8]) -> [ChannelEvent] {
        guard body.count == Self.message1Bytes, Array(body[0..<4]) == Self.magic else {
            return fail(.malformedHandshake("first message is not a channel hello"))
        }
        let version = UInt16(body[4]) << 8 | UInt16(body[5])
        guard version == syncProtocolVersion else { return fail(.versionMismatch(version)) }
        let initiatorEphemeral = Array(body[6..<38])
        let ephemeral = fixedResponderEphemeral ?? EphemeralKeyPair()
        fixedResponderEphemeral = nil
        guard let (rx, tx) = try? ephemeral.serverSessionKeys(clientPublicKey: initiatorEphemeral) else {
            return fail(.malformedHandshake("invalid ephemeral key"))
        }
        let keys = HandshakeKeys(initiatorToResponder: rx, responderToInitiator: tx)
        let h0 = Sodium.hash([Self.domain, body, ephemeral.publicKey])
        let signed = Array("resp".utf8) + h0 + identity.publicKey.bytes
        let payload = identity.publicKey.bytes + identity.sign(signed)
        let key = SecretBytes.derived(from: keys.responderToInitiator, label: "hs", transcript: h0)
        let message2 = ephemeral.publicKey + AEAD.seal(payload, key: key, nonce: AEAD.zeroNonce, additional: h0)
        let h1 = Sodium.hash([h0, identity.publicKey.bytes])
        state = .responderAwaitingIdentity(ephemeral: ephemeral, h0: h0, h1: h1, keys: keys)
        return [.send(Self.record(message2))]
    }

    private func handleResponse(_ body: [UInt8], ephemeral: EphemeralKeyPair, message1: [UInt8]) -> [ChannelEvent] {
        guard body.count == Self.message2Bytes else { return fail(.malformedHandshake("response has the wrong size")) }
        let responderEphemeral = Array(body[0..<32])
        guard let (rx, tx) = try? ephemeral.clientSessionKeys(serverPublicKey: responderEphemeral) else {
            return fail(.malformedHandshake("invalid ephemeral key"))
        }
        let h0 = Sodium.hash([Self.domain, message1, responderEphemeral])
        let key = SecretBytes.derived(from: rx, label: "hs", transcript: h0)
        guard let payload = AEAD.open(Array(body[32...]), key: key, nonce: AEAD.zeroNonce, additional: h0) else {
            return fail(.authenticationFailed("response does not decrypt"))
        }
        let responderKey = PublicKey(bytes: Array(payload[0..<32]))!
        guard responderKey == pinnedPeer else { return fail(.unexpectedPeerKey(responderKey)) }
        let signature = Array(payload[32..<96])
        guard responderKey.verify(signature: signature, message: Array("resp".utf8) + h0 + responderKey.bytes) else {
            return fail(.authenticationFailed("responder signature invalid"))
        }
        let h1 = Sodium.hash([h0, responderKey.bytes])
        let signed = Array("init".utf8) + h1 + identity.publicKey.bytes
        let identityPayload = identity.publicKey.bytes + identity.sign(signed)
        let sealKey = SecretBytes.derived(from: tx, label: "hs", transcript: h0)
        let message3 = AEAD.seal(identityPayload, key: sealKey, nonce: AEAD.zeroNonce, additional: h1)
        let h2 = Sodium.hash([h1, identity.publicKey.bytes])
        let session = SessionKeys(
            send: SecretBytes.derived(from: tx, label: "data", transcript: h2),
            receive: SecretBytes.derived(from: rx, label: "data", transcript: h2))
        guard let push = try? SecretStreamPush(key: session.send) else {
            return fail(.authenticationFailed("could not start the send stream"))
        }
        sender = push
        peer = responderKey
        state = .initiatorAwaitingHeader(session: session)
        return [.send(Self.record(message3) + Self.record(push.header))]
    }

    private func handleIdentity(_ body: [UInt8], h1: [UInt8], keys: HandshakeKeys) -> [ChannelEvent] {
        guard body.count == Self.message3Bytes else { return fail(.malformedHandshake("identity has the wrong size")) }
        guard case .responderAwaitingIdentity(_, let h0, _, _) = state else { return [] }
        let key = SecretBytes.derived(from: keys.initiatorToResponder, label: "hs", transcript: h0)
        guard let payload = AEAD.open(body, key: key, nonce: AEAD.zeroNonce, additional: h1) else {
            return fail(.authenticationFailed("identity does not decrypt"))
        }
        let initiatorKey = PublicKey(bytes: Array(payload[0..<32]))!
        let signature = Array(payload[32..<96])
        guard initiatorKey.verify(signature: signature, message: Array("init".utf8) + h1 + initiatorKey.bytes) else {
            return fail(.authenticationFailed("initiator signature invalid"))
        }
        let h2 = Sodium.hash([h1, initiatorKey.bytes])
        let session = SessionKeys(
            send: SecretBytes.derived(from: keys.responderToInitiator, label: "data", transcript: h2),
            receive: SecretBytes.derived(from: keys.initiatorToResponder, label: "data", transcript: h2))
        peer = initiatorKey
        state = .responderVerifying(peer: initiatorKey, session: session)
        return [.verifyPeer(initiatorKey)]
    }
}

extension SecretBytes {
    /// A 32-byte key: BLAKE2b keyed with `key` over `label ‖ transcript`.
    static func derived(from key: SecretBytes, label: String, transcript: [UInt8]) -> SecretBytes {
        var bytes = Sodium.hash([Array(label.utf8), transcript], key: key)
        return SecretBytes(consuming: &bytes)
    }
}

import Testing

@testable import SyncProtocol

/// Drives an initiator and a responder against each other through in-memory buffers.
private struct Pair {
    let hubKey = SigningKeyPair.generate()
    let storeKey = SigningKeyPair.generate()
    let store: SecureChannel
    let hub: SecureChannel
    var toHub: [UInt8]
    /// Every byte the store sent, as an eavesdropper would record it.
    var sentToHub: [UInt8] = []
    var toStore: [UInt8] = []
    var storeEvents: [ChannelEvent] = []
    var hubEvents: [ChannelEvent] = []
    var allowed = true

    init(pinned: PublicKey? = nil) {
        let (store, hello) = SecureChannel.initiator(identity: storeKey, pinnedPeer: pinned ?? hubKey.publicKey)
        self.store = store
        hub = SecureChannel.responder(identity: hubKey)
        toHub = hello
    }

    /// Moves bytes both ways, `chunk` bytes at a time, until nothing is left.
    mutating func pump(chunk: Int = Int.max) {
        while !toHub.isEmpty || !toStore.isEmpty {
            if !toHub.isEmpty {
                let piece = Array(toHub.prefix(chunk))
                toHub.removeFirst(piece.count)
                sentToHub += piece
                handleHub(hub.receive(piece))
            }
            if !toStore.isEmpty {
                let piece = Array(toStore.prefix(chunk))
                toStore.removeFirst(piece.count)
                for event in store.receive(piece) {
                    if case .send(let bytes) = event { toHub += bytes } else { storeEvents.append(event) }
                }
            }
        }
    }

    mutating func handleHub(_ events: [ChannelEvent]) {
        for event in events {
            switch event {
            case .send(let bytes): toStore += bytes
            case .verifyPeer(let key):
                hubEvents.append(event)
                handleHub(hub.peerVerified(allowed: allowed && key == storeKey.publicKey))
            default: hubEvents.append(event)
            }
        }
    }
}

@Suite struct SecureChannelTests {
    @Test(arguments: [Int.max, 1, 7])
    func handshakeAuthenticatesBothSidesAndCarriesMessages(chunk: Int) throws {
        var pair = Pair()
        pair.pump(chunk: chunk)
        #expect(pair.store.isOpen && pair.hub.isOpen)
        #expect(pair.storeEvents == [.established(peer: pair.hubKey.publicKey)])
        #expect(pair.hubEvents == [.verifyPeer(pair.storeKey.publicKey), .established(peer: pair.storeKey.publicKey)])
        pair.toHub += try #require(pair.store.seal(Array("hello hub".utf8)))
        pair.toStore += try #require(pair.hub.seal(Array("hello store".utf8)))
        pair.pump(chunk: chunk)
        #expect(pair.hubEvents.last == .deliver(Array("hello hub".utf8)))
        #expect(pair.storeEvents.last == .deliver(Array("hello store".utf8)))
    }

    @Test func aStoreRefusesAHubWithAnotherKey() {
        var pair = Pair(pinned: SigningKeyPair.generate().publicKey)
        pair.pump()
        #expect(pair.storeEvents == [.close(.unexpectedPeerKey(pair.hubKey.publicKey))])
        #expect(!pair.store.isOpen)
    }

    @Test func theHubRefusesAKeyThatIsNotEnrolled() {
        var pair = Pair()
        pair.allowed = false
        pair.pump()
        #expect(pair.hubEvents.last == .close(.peerNotAllowed(pair.storeKey.publicKey)))
        #expect(!pair.hub.isOpen && !pair.store.isOpen)
    }

    @Test func aTamperedFrameClosesTheChannel() throws {
        var pair = Pair()
        pair.pump()
        var frame = try #require(pair.store.seal([1, 2, 3]))
        frame[frame.count - 1] ^= 0x01
        pair.toHub += frame
        pair.pump()
        #expect(pair.hubEvents.last == .close(.frameRejected))
    }

    @Test func aReplayedFrameClosesTheChannel() throws {
        var pair = Pair()
        pair.pump()
        let frame = try #require(pair.store.seal([1, 2, 3]))
        pair.toHub += frame
        pair.pump()
        #expect(pair.hubEvents.last == .deliver([1, 2, 3]))
        pair.toHub += frame
        pair.pump()
        #expect(pair.hubEvents.last == .close(.frameRejected))
    }

    @Test func reorderedFramesCloseTheChannel() throws {
        var pair = Pair()
        pair.pump()
        let first = try #require(pair.store.seal([1]))
        let second = try #require(pair.store.seal([2]))
        pair.toHub += second + first
        pair.pump()
        #expect(pair.hubEvents.last == .close(.frameRejected))
    }

    @Test func anOversizedRecordClosesTheChannelBeforeBuffering() {
        let hub = SecureChannel.responder(identity: SigningKeyPair.generate())
        let events = hub.receive([0x7F, 0xFF, 0xFF, 0xFF])
        guard case .close(.oversizedRecord)? = events.last else {
            Issue.record("expected an oversized-record close, got \(events)")
            return
        }
    }

    @Test func garbageInsteadOfAHelloIsRefused() {
        let hub = SecureChannel.responder(identity: SigningKeyPair.generate())
        let events = hub.receive(SecureChannel.record(Array("GET / HTTP/1.1\r\n\r\n".utf8)))
        #expect(events == [.close(.malformedHandshake("first message is not a channel hello"))])
    }

    @Test func aFinalFrameIsAnOrderlyCloseAndACutIsNot() throws {
        var pair = Pair()
        pair.pump()
        pair.toHub += try #require(pair.store.sealFinal())
        pair.pump()
        #expect(pair.hubEvents.last == .close(.closedByPeer))
    }

    @Test func aRecordedHandshakeCannotBeReplayed() {
        // Record everything a store sent in a genuine session, then replay it to a fresh
        // hub session: the hub answers with a new ephemeral key, so the recorded identity
        // message no longer decrypts and the session never opens.
        var pair = Pair()
        pair.pump()
        #expect(pair.hub.isOpen)
        let replayHub = SecureChannel.responder(identity: pair.hubKey)
        let events = replayHub.receive(pair.sentToHub)
        #expect(events.count == 2)
        #expect(events.last == .close(.authenticationFailed("identity does not decrypt")))
        #expect(!replayHub.isOpen)
    }
}

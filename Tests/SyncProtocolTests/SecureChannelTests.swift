import Testing

@testable import SyncProtocol

/// Drives an initiator and a responder against each other through in-memory buffers.
private struct Pair {
    let hubKey: SigningKeyPair
    let storeKey: SigningKeyPair
    let guardian: HandshakeGuard
    let store: SecureChannel
    let hub: SecureChannel
    var toHub: [UInt8]
    var toStore: [UInt8] = []
    /// Every byte the store sent, as an eavesdropper would record it.
    var sentToHub: [UInt8] = []
    var storeEvents: [ChannelEvent] = []
    var hubEvents: [ChannelEvent] = []
    var allowed = true

    init(
        pinned: PublicKey? = nil, hubKey: SigningKeyPair = .generate(), storeKey: SigningKeyPair = .generate(),
        guardian: HandshakeGuard = HandshakeGuard(), now: UInt64 = 1_000, policy: RekeyPolicy = RekeyPolicy(),
        suites: [CipherSuite] = CipherSuite.supported
    ) {
        self.hubKey = hubKey
        self.storeKey = storeKey
        self.guardian = guardian
        let (store, hello) = SecureChannel.initiator(
            identity: storeKey, pinnedPeer: pinned ?? hubKey.publicKey, now: now, policy: policy, suites: suites)
        self.store = store
        hub = SecureChannel.responder(identity: hubKey, guardian: guardian, policy: policy)
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

    @Test(arguments: CipherSuite.supported.map { [$0] } + [CipherSuite.supported])
    func bothEndsAgreeOnACipherSuiteBothSupport(offered: [CipherSuite]) throws {
        var pair = Pair(suites: offered)
        pair.pump()
        #expect(pair.store.suite == offered.first && pair.hub.suite == offered.first)
        for index in 0..<5 {
            pair.toHub += try #require(pair.store.seal([UInt8](repeating: UInt8(index), count: 1000)))
            pair.toStore += try #require(pair.hub.seal([UInt8(index)]))
        }
        pair.pump()
        #expect(pair.hubEvents.count == 2 + 5 && pair.storeEvents.count == 1 + 5)
        var tampered = try #require(pair.store.seal([9, 9, 9]))
        tampered[tampered.count - 1] ^= 0x80
        pair.toHub += tampered
        pair.pump()
        #expect(pair.hubEvents.last == .close(.frameRejected))
    }

    @Test func aHelloOfferingNoKnownCipherIsRefused() {
        let (_, hello) = SecureChannel.initiator(
            identity: .generate(), pinnedPeer: SigningKeyPair.generate().publicKey, now: 1, suites: [])
        let hub = SecureChannel.responder(identity: .generate(), guardian: HandshakeGuard())
        #expect(hub.receive(hello) == [.close(.malformedHandshake("no cipher suite in common (offered 0)"))])
    }

    @Test func aStoreRefusesAHubWithAnotherKey() {
        var pair = Pair(pinned: SigningKeyPair.generate().publicKey)
        pair.pump()
        #expect(pair.storeEvents == [.close(.unexpectedPeerKey(pair.hubKey.publicKey))])
        #expect(!pair.store.isOpen && !pair.hub.isOpen)
    }

    @Test func theHubRefusesAKeyThatIsNotEnrolled() {
        var pair = Pair()
        pair.allowed = false
        pair.pump()
        #expect(pair.hubEvents.last == .close(.peerNotAllowed(pair.storeKey.publicKey)))
        #expect(!pair.hub.isOpen)
    }

    @Test func aRecordedFirstMessageIsAcceptedOnceAndRefusedTheSecondTime() {
        let hubKey = SigningKeyPair.generate()
        let guardian = HandshakeGuard()
        var pair = Pair(hubKey: hubKey, guardian: guardian)
        let firstMessage = pair.toHub
        pair.pump()
        #expect(pair.hub.isOpen)
        let replayed = SecureChannel.responder(identity: hubKey, guardian: guardian)
        #expect(replayed.receive(firstMessage) == [.close(.replayedHandshake("this first message was seen before"))])
    }

    @Test func aRecordedHandshakeReplayedToAFreshHubNeverOpens() {
        // Even to a hub that never saw it (a restarted one), the recorded identity message
        // no longer decrypts: the hub answers with a new ephemeral key.
        var pair = Pair()
        pair.pump()
        let freshHub = SecureChannel.responder(identity: pair.hubKey, guardian: HandshakeGuard())
        let events = freshHub.receive(pair.sentToHub)
        #expect(events.last == .close(.authenticationFailed("identity does not decrypt")))
        #expect(!freshHub.isOpen)
    }

    @Test func aStoreHandshakeWithAnOlderTimestampIsRefused() {
        let hubKey = SigningKeyPair.generate()
        let storeKey = SigningKeyPair.generate()
        let guardian = HandshakeGuard()
        var first = Pair(hubKey: hubKey, storeKey: storeKey, guardian: guardian, now: 5_000)
        first.pump()
        #expect(first.hub.isOpen)
        var older = Pair(hubKey: hubKey, storeKey: storeKey, guardian: guardian, now: 4_000)
        older.pump()
        guard case .close(.replayedHandshake)? = older.hubEvents.last else {
            Issue.record("expected a refused stale timestamp, got \(older.hubEvents)")
            return
        }
        var newer = Pair(hubKey: hubKey, storeKey: storeKey, guardian: guardian, now: 6_000)
        newer.pump()
        #expect(newer.hub.isOpen)
    }

    @Test func aBitFlippedAtAnyPositionOfAFrameClosesTheChannel() throws {
        var template = Pair()
        template.pump()
        let frame = try #require(template.store.seal(Array("a frame worth tampering with".utf8)))
        for bit in 0..<(frame.count * 8) {
            var pair = Pair()
            pair.pump()
            var tampered = try #require(pair.store.seal(Array("a frame worth tampering with".utf8)))
            tampered[bit / 8] ^= UInt8(1 << (bit % 8))
            pair.toHub += tampered
            pair.pump()
            let delivered = pair.hubEvents.contains { if case .deliver = $0 { true } else { false } }
            #expect(!delivered, "bit \(bit) was not detected")
            if bit >= 32 {
                #expect(pair.hubEvents.last == .close(.frameRejected), "bit \(bit)")
            } else if case .close(.oversizedRecord)? = pair.hubEvents.last {
                // a flipped length bit made the record claim more than the limit
            } else {
                // a length that shrank or grew within the limit: rejected or still waiting
                #expect(!pair.hub.isClosed || pair.hubEvents.last == .close(.frameRejected), "bit \(bit)")
            }
        }
    }

    @Test func aTruncatedFrameIsNeverDelivered() throws {
        var pair = Pair()
        pair.pump()
        let frame = try #require(pair.store.seal([1, 2, 3, 4]))
        // Cut mid-record: nothing is delivered, the channel waits for the rest.
        pair.toHub += Array(frame.dropLast(3))
        pair.pump()
        #expect(pair.hubEvents.count == 2)
        // A record whose length was rewritten to drop the tail fails authentication.
        var fresh = Pair()
        fresh.pump()
        var cut = try #require(fresh.store.seal([5, 6, 7, 8]))
        cut.removeLast(2)
        cut[3] &-= 2
        fresh.toHub += cut
        fresh.pump()
        #expect(fresh.hubEvents.last == .close(.frameRejected))
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

    @Test func aLengthPrefixPastTheLimitClosesTheChannelBeforeBuffering() {
        let hub = SecureChannel.responder(identity: SigningKeyPair.generate(), guardian: HandshakeGuard())
        let events = hub.receive([0x7F, 0xFF, 0xFF, 0xFF])
        guard case .close(.oversizedRecord)? = events.last else {
            Issue.record("expected an oversized-record close, got \(events)")
            return
        }
    }

    @Test func garbageInsteadOfAHelloIsRefused() {
        let hub = SecureChannel.responder(identity: SigningKeyPair.generate(), guardian: HandshakeGuard())
        let events = hub.receive(SecureChannel.record(Array("GET / HTTP/1.1\r\n\r\n".utf8)))
        #expect(events == [.close(.malformedHandshake("first message is not a channel hello"))])
    }

    @Test func aFinalFrameIsAnOrderlyClose() throws {
        var pair = Pair()
        pair.pump()
        pair.toHub += try #require(pair.store.sealFinal())
        pair.pump()
        #expect(pair.hubEvents.last == .close(.closedByPeer))
        #expect(pair.store.seal([1]) == nil, "nothing is sent after the final frame")
    }

    @Test func keysAreReplacedAfterTheConfiguredNumberOfMessages() throws {
        var pair = Pair(policy: RekeyPolicy(maxMessages: 3, maxBytes: 1 << 30, maxMilliseconds: 1 << 40))
        pair.pump()
        for index in 0..<10 {
            pair.toHub += try #require(pair.store.seal([UInt8(index)]))
            pair.pump()
            #expect(pair.hubEvents.last == .deliver([UInt8(index)]))
        }
        #expect(pair.store.sendEpoch == 3 && pair.hub.receiveEpoch == 3)
    }

    @Test func keysAreReplacedAfterTheConfiguredTimeOnTheInjectedClock() throws {
        var pair = Pair(policy: RekeyPolicy(maxMessages: 1 << 40, maxBytes: 1 << 40, maxMilliseconds: 60_000))
        pair.pump()
        pair.toStore += try #require(pair.hub.seal([1], now: 10_000))
        pair.pump()
        #expect(pair.hub.sendEpoch == 0)
        pair.toStore += try #require(pair.hub.seal([2], now: 70_000))
        pair.toStore += try #require(pair.hub.seal([3], now: 70_001))
        pair.pump()
        #expect(pair.storeEvents.suffix(3) == [.deliver([1]), .deliver([2]), .deliver([3])])
        #expect(pair.hub.sendEpoch == 1 && pair.store.receiveEpoch == 1)
    }
}

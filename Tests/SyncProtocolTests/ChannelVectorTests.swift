import Foundation
import Testing

@testable import SyncProtocol

/// The published test vector of the channel (docs/channel.md): fixed keys and timestamp in,
/// handshake messages, data keys and the first frame out. Regenerate with UPDATE_GOLDEN=1.
@Suite struct ChannelVectorTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/channel-v1.vector")

    static func seed(_ byte: UInt8) -> [UInt8] { [UInt8](repeating: byte, count: 32) }

    static func compute() throws -> [(String, String)] {
        let hub = SigningKeyPair.fromSeed(seed(0x01))
        let store = SigningKeyPair.fromSeed(seed(0x02))
        let timestamp: UInt64 = 1_764_000_000_000
        let (initiator, message1) = SecureChannel.initiator(
            identity: store, pinnedPeer: hub.publicKey, now: timestamp, policy: RekeyPolicy(),
            suites: [.xchacha20poly1305], ephemeral: EphemeralKeyPair(seed: seed(0x03)))
        let responder = SecureChannel.responder(
            identity: hub, guardian: HandshakeGuard(), policy: RekeyPolicy(),
            ephemeral: EphemeralKeyPair(seed: seed(0x04)))
        guard case .send(let message2)? = responder.receive(message1).first,
            case .send(let message3)? = initiator.receive(message2).first
        else { throw SodiumError(operation: "vector handshake did not run") }
        guard case .verifyPeer? = responder.receive(message3).first else {
            throw SodiumError(operation: "vector handshake did not verify")
        }
        _ = responder.peerVerified(allowed: true)
        let frame = try #require(initiator.seal(Array("hello hub".utf8), now: timestamp))
        #expect(responder.receive(frame) == [.deliver(Array("hello hub".utf8))])
        let keys = try #require(initiator.dataKeys)
        let hex = GoldenVectorTests.hex
        return [
            ("hub-seed", hex(seed(0x01))), ("hub-public", hub.publicKey.hex),
            ("store-seed", hex(seed(0x02))), ("store-public", store.publicKey.hex),
            ("store-ephemeral-seed", hex(seed(0x03))), ("hub-ephemeral-seed", hex(seed(0x04))),
            ("timestamp-ms", String(timestamp)),
            ("message1", hex(message1)), ("message2", hex(message2)), ("message3", hex(message3)),
            ("key-store-to-hub", keys.toResponder.withUnsafeBytes { hex(Array($0)) }),
            ("key-hub-to-store", keys.toInitiator.withUnsafeBytes { hex(Array($0)) }),
            ("first-frame-plaintext", hex(Array("hello hub".utf8))), ("first-frame", hex(frame)),
        ]
    }

    @Test func theHandshakeReproducesThePublishedVector() throws {
        let lines = try Self.compute().map { "\($0.0) \($0.1)" }
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try (lines.joined(separator: "\n") + "\n").write(to: Self.fixture, atomically: true, encoding: .utf8)
        }
        let stored = try String(contentsOf: Self.fixture, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(stored == lines)
    }
}

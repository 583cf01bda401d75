// libFuzzer entry point for the wire decoders and the channel's record parser. Built by
// `make fuzz` together with the SyncProtocol sources (one module), never by `swift build`.
// Any crash, trap, sanitizer report or broken round trip is a finding.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireDecoders(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let message = try? SyncMessage(decoding: bytes) {
        // Whatever decodes must survive a round trip unchanged.
        let again = try? SyncMessage(decoding: message.encoded)
        precondition(again == message, "sync message round trip changed the message")
    }
    if let entry = try? LogEntry(decoding: bytes) {
        precondition((try? LogEntry(decoding: entry.encoded)) == entry, "log entry round trip changed the entry")
    }
    // The channel's first flight: a responder must refuse garbage cleanly.
    let responder = SecureChannel.responder(identity: fuzzIdentity, guardian: HandshakeGuard(capacity: 16))
    _ = responder.receive(bytes)
    return 0
}

private let fuzzIdentity = SigningKeyPair.generate()

import Testing

@testable import SyncProtocol

@Suite struct HandshakeLimitTests {
    @Test func aPeerGetsABurstThenAFewHandshakesPerSecond() {
        var limiter = HandshakeRateLimiter(ratePerSecond: 5, burst: 10)
        let burst = (0..<20).filter { _ in limiter.allow("10.0.0.1", now: 1_000) }.count
        #expect(burst == 10)
        let other = limiter.allow("10.0.0.2", now: 1_000)
        let tooSoon = limiter.allow("10.0.0.1", now: 1_100)
        let refilled = limiter.allow("10.0.0.1", now: 1_200)
        #expect(other, "another address has its own bucket")
        #expect(!tooSoon)
        #expect(refilled, "one token back after 200 ms at 5/s")
        let nextSecond = (0..<20).filter { _ in limiter.allow("10.0.0.1", now: 2_200) }.count
        #expect(nextSecond == 5)
    }

    @Test func theReplayGuardForgetsOnlyBeyondItsCapacity() {
        let guardian = HandshakeGuard(capacity: 2)
        #expect(guardian.admitFirstMessage(ephemeral: [1]))
        #expect(!guardian.admitFirstMessage(ephemeral: [1]))
        #expect(guardian.admitFirstMessage(ephemeral: [2]))
        #expect(guardian.admitFirstMessage(ephemeral: [3]))
        #expect(guardian.admitFirstMessage(ephemeral: [1]), "evicted after two newer ones")
        #expect(!guardian.admitFirstMessage(ephemeral: [3]))
    }
}

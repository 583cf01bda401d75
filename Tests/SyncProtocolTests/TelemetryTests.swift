import Testing

@testable import SyncProtocol

/// A store's counters travel to the hub in its sync session (wire 1.1), and only to a hub
/// that reads them.
@Suite struct TelemetryTests {
    let counters = EdgeTelemetry(
        unsyncedOperations: 4, writerQueueDepth: 1, offlineMilliseconds: 30_000, redemptionsRefused: 3,
        uncoveredPoints: 20, uptimeMilliseconds: 600_000)

    func onlineEdge(hubMinor: UInt8) -> EdgeSession {
        var session = EdgeSession(configuration: .init(node: NodeID(1)), feedWatermark: 0)
        _ = session.connected(now: 0)
        session.hubWireMinor = hubMinor
        _ = session.received(.welcome(version: syncProtocolVersion, originHighWater: 0), now: 1)
        return session
    }

    @Test func anOnlineStoreReportsToAHubThatReadsTelemetry() {
        #expect(onlineEdge(hubMinor: 1).report(counters) == [.send(.telemetry(counters))])
    }

    @Test func aHubOfWire10GetsNoTelemetryAndAnOfflineStoreSendsNone() {
        #expect(onlineEdge(hubMinor: 0).report(counters).isEmpty)
        let offline = EdgeSession(configuration: .init(node: NodeID(1)), feedWatermark: 0)
        #expect(offline.report(counters).isEmpty)
    }

    @Test func theHubRecordsTelemetryOnlyFromAReadySession() {
        var session = HubSession(store: NodeID(1))
        #expect(session.received(.telemetry(counters)).last != .recordTelemetry(counters), "not before hello")
        session = HubSession(store: NodeID(1))
        _ = session.received(.hello(version: syncProtocolVersion, node: NodeID(1), feedWatermark: 0, rulesVersion: 0))
        _ = session.highWaterLoaded(0)
        #expect(session.received(.telemetry(counters)) == [.recordTelemetry(counters)])
    }

    @Test func theMinorVersionIsReadFromTheFrame() {
        #expect(SyncMessage.minorVersion(of: SyncMessage.ack(upTo: 1).encoded) == WireVersion.minor)
        #expect(SyncMessage.minorVersion(of: [1]) == nil)
    }
}

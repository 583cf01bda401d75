import Testing

@testable import NodeKit

@Suite struct LatencyWindowTests {
    @Test func percentilesAreNearestRankOverTheWindow() throws {
        var window = LatencyWindow(capacity: 100)
        #expect(window.percentiles([0.5]) == nil, "an empty window has no percentiles")
        for microseconds in (1...100).reversed() { window.record(nanoseconds: UInt64(microseconds) * 1_000) }
        #expect(window.count == 100 && window.total == 100)
        #expect(try #require(window.percentiles([0, 0.5, 0.99, 1])) == [1, 50, 99, 100])
    }

    @Test func theOldestRequestsLeaveAFullWindow() throws {
        var window = LatencyWindow(capacity: 10)
        for _ in 0..<10 { window.record(nanoseconds: 900_000) }
        for microseconds in 1...10 { window.record(nanoseconds: UInt64(microseconds) * 1_000) }
        #expect(window.count == 10 && window.total == 20)
        #expect(try #require(window.percentiles([0.5, 1])) == [5, 10], "the ten slow ones are gone")
        window.record(nanoseconds: 2_000)
        #expect(try #require(window.percentiles([0])) == [2], "the 1 µs request was the oldest left")
    }

    @Test func anHourLongRequestIsClampedNotWrapped() throws {
        var window = LatencyWindow(capacity: 4)
        window.record(nanoseconds: UInt64.max)
        window.record(nanoseconds: 0)
        #expect(try #require(window.percentiles([0, 1])) == [0, UInt32.max])
    }
}

import CoreMetrics
import Foundation
import NodeKit
import SyncProtocol

/// What the hub knows about its stores right now: kept by the loop thread as sessions come
/// and go, read as snapshots by the operator console's threads, and mirrored into metrics
/// (swift-metrics; the console exports them for Prometheus).
public final class HubStatus: @unchecked Sendable {
    // @unchecked: `stores` and the metric caches are only touched under `lock`.

    /// One store as seen from the hub. Times are Unix milliseconds.
    public struct Store: Sendable, Equatable {
        public var name: String
        public var sessions: Int = 0
        public var connectedSince: UInt64?
        public var lastSeen: UInt64?
        public var mergedEntries: UInt64 = 0
        /// Age of the newest entry merged from this store when it was merged: how long an
        /// operation took to reach the hub.
        public var mergeLagMilliseconds: UInt64?
        public var rightsGrants: UInt64 = 0
        public var pointsGranted: UInt64 = 0
        /// Sessions ended for a reason other than an orderly close.
        public var refusals: UInt64 = 0
        /// The store's own counters, as last reported through its session.
        public var telemetry: EdgeTelemetry?
        public var telemetryAt: UInt64?

        public var online: Bool { sessions > 0 }
    }

    private let lock = NSLock()
    private var stores: [NodeID: Store] = [:]
    /// The sum of every store's sessions, kept as they open and close.
    private var sessionTotal = 0
    private let factory: any MetricsFactory
    private let sessionsGauge: Gauge
    /// Counters with one label, created on first use, by "metric|label value".
    private var labelled: [String: Counter] = [:]
    private var perStore: [NodeID: StoreMetrics] = [:]
    public let startedAt: UInt64 = wallClockMilliseconds()

    /// Metrics go to `factory` (by default the process's bootstrapped one).
    public init(metrics factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        sessionsGauge = Gauge(label: "hub_sessions", factory: factory)
    }

    private struct StoreMetrics {
        let online: Gauge
        let lastSeen: Gauge
        let merged: Counter
        let mergeLag: Gauge
        let grants: Counter
        let pointsGranted: Counter
        let unsynced: Gauge
        let queueDepth: Gauge
        let offline: Gauge
        let refused: Gauge
        let uncovered: Gauge

        init(store: NodeID, name: String, factory: any MetricsFactory) {
            let dimensions = [("store", name), ("store_id", "\(store.rawValue)")]
            func gauge(_ label: String) -> Gauge { Gauge(label: label, dimensions: dimensions, factory: factory) }
            func counter(_ label: String) -> Counter { Counter(label: label, dimensions: dimensions, factory: factory) }
            online = gauge("hub_store_online")
            lastSeen = gauge("hub_store_last_seen_seconds")
            merged = counter("hub_merged_entries_total")
            mergeLag = gauge("hub_merge_lag_seconds")
            grants = counter("hub_rights_grants_total")
            pointsGranted = counter("hub_rights_points_granted_total")
            unsynced = gauge("hub_edge_unsynced_operations")
            queueDepth = gauge("hub_edge_writer_queue_depth")
            offline = gauge("hub_edge_offline_seconds")
            refused = gauge("hub_edge_redemptions_refused")
            uncovered = gauge("hub_edge_uncovered_points")
        }
    }

    /// A snapshot of every store seen since the hub started.
    public func snapshot() -> [NodeID: Store] {
        lock.withLock { stores }
    }

    public var liveSessions: Int { lock.withLock { sessionTotal } }

    private func update(_ store: NodeID, name: String, _ body: (inout Store, StoreMetrics) -> Void) {
        lock.withLock {
            var record = stores[store] ?? Store(name: name)
            record.name = name
            let metrics = perStore[store] ?? StoreMetrics(store: store, name: name, factory: factory)
            perStore[store] = metrics
            let sessionsBefore = record.sessions
            body(&record, metrics)
            stores[store] = record
            if let seen = record.lastSeen { metrics.lastSeen.record(Double(seen) / 1000) }
            if record.sessions != sessionsBefore {
                sessionTotal += record.sessions - sessionsBefore
                metrics.online.record(record.sessions > 0 ? 1 : 0)
                sessionsGauge.record(sessionTotal)
            }
        }
    }

    // MARK: Events (loop thread)

    private func increment(_ metric: String, _ dimension: String, _ value: String) {
        lock.withLock {
            let key = "\(metric)|\(value)"
            let counter = labelled[key] ?? Counter(label: metric, dimensions: [(dimension, value)], factory: factory)
            labelled[key] = counter
            counter.increment()
        }
    }

    /// A store asked for a member it does not hold (another partner group's, or one its feed
    /// has not brought yet).
    func lookedUp(found: Bool) {
        increment("hub_member_lookups_total", "outcome", found ? "found" : "unknown")
    }

    func handshake(accepted: Bool) {
        increment("hub_handshakes_total", "outcome", accepted ? "accepted" : "refused")
    }

    /// A session was refused or ended abnormally; `reason` is a short fixed word (a label).
    func refused(_ reason: String, store: NodeID? = nil, name: String? = nil) {
        increment("hub_refusals_total", "reason", reason)
        if let store, let name { update(store, name: name) { record, _ in record.refusals += 1 } }
    }

    func connected(_ store: NodeID, name: String) {
        let now = wallClockMilliseconds()
        update(store, name: name) { record, _ in
            if record.sessions == 0 { record.connectedSince = now }
            record.sessions += 1
            record.lastSeen = now
        }
    }

    func disconnected(_ store: NodeID, name: String) {
        let now = wallClockMilliseconds()
        update(store, name: name) { record, _ in
            record.sessions = max(0, record.sessions - 1)
            if record.sessions == 0 { record.connectedSince = nil }
            record.lastSeen = now
        }
    }

    func seen(_ store: NodeID, name: String) {
        let now = wallClockMilliseconds()
        update(store, name: name) { record, _ in record.lastSeen = now }
    }

    func merged(_ store: NodeID, name: String, entries: [LogEntry]) {
        let now = wallClockMilliseconds()
        let newest = entries.map(\.timestamp.milliseconds).max()
        update(store, name: name) { record, metrics in
            record.mergedEntries += UInt64(entries.count)
            metrics.merged.increment(by: Int64(entries.count))
            if let newest {
                let lag = now > newest ? now - newest : 0
                record.mergeLagMilliseconds = lag
                metrics.mergeLag.record(Double(lag) / 1000)
            }
        }
    }

    func granted(_ store: NodeID, name: String, points: UInt64) {
        update(store, name: name) { record, metrics in
            record.rightsGrants += 1
            record.pointsGranted += points
            metrics.grants.increment()
            metrics.pointsGranted.increment(by: Int64(clamping: points))
        }
    }

    func telemetry(_ store: NodeID, name: String, _ counters: EdgeTelemetry) {
        let now = wallClockMilliseconds()
        update(store, name: name) { record, metrics in
            record.telemetry = counters
            record.telemetryAt = now
            metrics.unsynced.record(Int64(clamping: counters.unsyncedOperations))
            metrics.queueDepth.record(Int64(clamping: counters.writerQueueDepth))
            metrics.offline.record(Double(counters.offlineMilliseconds) / 1000)
            metrics.refused.record(Int64(clamping: counters.redemptionsRefused))
            metrics.uncovered.record(Int64(clamping: counters.uncoveredPoints))
        }
    }
}

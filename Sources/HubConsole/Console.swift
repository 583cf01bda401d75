import Foundation
import HubNode
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import NodeKit
import Prometheus
import SyncProtocol

/// Where and how the operator console serves.
public struct ConsoleConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The hub database the console reads (and writes promo codes to).
    public var database: HubDatabaseLocation
    /// The hub's public key (finds phones hashed before the first rules).
    public var hubKey: PublicKey?
    /// The largest request body accepted.
    public var maxBodyBytes = 64 * 1024

    public init(host: String, port: Int, database: HubDatabaseLocation, hubKey: PublicKey?) {
        self.host = host
        self.port = port
        self.database = database
        self.hubKey = hubKey
    }
}

/// The operator console: the hub's HTTP API (JSON and CSV), `/metrics` for Prometheus,
/// `/healthz`, and the dashboard page. It runs on its own threads (Hummingbird on SwiftNIO),
/// reads the hub database through its own connections and the live store status through
/// `HubStatus`; the hub's loop and writer thread are never blocked by it.
public final class Console: Sendable {
    let configuration: ConsoleConfiguration
    let api: ConsoleAPI
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    private let state = LockedState()

    private final class LockedState: @unchecked Sendable {
        // @unchecked: guarded by `lock`.
        let lock = NSLock()
        var task: Task<Void, any Error>?
    }

    public init(
        configuration: ConsoleConfiguration, status: HubStatus, registry: PrometheusCollectorRegistry, logger: Logger
    ) {
        self.configuration = configuration
        self.registry = registry
        self.logger = logger
        api = ConsoleAPI(
            databases: ConnectionPool(location: configuration.database),
            queries: OperatorQueries(hubKey: configuration.hubKey), status: status, registry: registry,
            maxBodyBytes: configuration.maxBodyBytes, logger: logger)
    }

    /// Starts serving and returns the bound port once the server listens.
    public func start() throws -> Int {
        let router = Router(context: BasicRequestContext.self)
        api.register(on: router)
        let bound = PortBox()
        let app = Application(
            router: router,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "loyalty-hub"),
            onServerRunning: { channel in bound.set(channel.localAddress?.port ?? -1) },
            logger: logger)
        let task = Task.detached { try await app.runService(gracefulShutdownSignals: []) }
        state.lock.withLock { state.task = task }
        guard let port = bound.wait(seconds: 15), port > 0 else {
            task.cancel()
            throw HubError(
                "the console could not listen on \(configuration.host):\(configuration.port) (is the port in use?)")
        }
        return port
    }

    /// Stops serving (graceful: requests in progress finish).
    public func stop() {
        let task = state.lock.withLock { state.task }
        task?.cancel()
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            _ = await task?.result
            done.signal()
        }
        _ = done.wait(timeout: .now() + 5)
    }

    private final class PortBox: @unchecked Sendable {
        // @unchecked: guarded by `condition`.
        private let condition = NSCondition()
        private var port: Int?
        func set(_ value: Int) {
            condition.withLock {
                port = value
                condition.broadcast()
            }
        }
        func wait(seconds: Double) -> Int? {
            let deadline = Date().addingTimeInterval(seconds)
            return condition.withLock {
                while port == nil && condition.wait(until: deadline) {}
                return port
            }
        }
    }
}

/// Database connections for the console's requests, opened on demand and reused. Reads run
/// on read-only connections; the rare write (promo codes) takes a connection of its own. A
/// connection whose request failed is closed rather than reused.
final class ConnectionPool: @unchecked Sendable {
    // @unchecked: `idle` is guarded by `lock`; a connection is used by one thread at a time.
    private let lock = NSLock()
    private var idle: [any SQLDatabase] = []
    let location: HubDatabaseLocation

    init(location: HubDatabaseLocation) { self.location = location }

    /// Runs `body` with a read-only connection on NIO's blocking-work pool.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive { [self] in
            let db = try lock.withLock { idle.popLast() } ?? HubLedger.open(location, readOnly: true)
            let result = try body(db)
            lock.withLock { idle.append(db) }
            return result
        }
    }

    /// Runs `body` in a write transaction on a connection of its own.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLDatabase) throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive { [location] in
            let db = try HubLedger.open(location)
            return try db.transaction { try body(db) }
        }
    }
}

import EdgeNode
import Foundation
import NodeKit
import SyncProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// Why a harness run failed.
public struct HarnessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A hub and stores running as real processes on loopback, each store's uplink through a
/// relay that can be cut: the real executables, sockets, databases and encryption.
public final class LocalCluster: @unchecked Sendable {
    // @unchecked: `children` is guarded by `lock`; everything else is used by one thread.
    public struct StoreHandle: Sendable {
        public let name: String
        public let id: UInt32
        public let pos: SocketAddress
        /// The store's Unix-domain POS socket.
        public let posSocket: String
        let relayPID: Int32
    }

    public let binaries: URL
    public let workDirectory: URL
    private let lock = NSLock()
    private var children: [Process] = []
    private var hubKey = ""
    private var hubPort: UInt16 = 0
    /// Every hub process started, in order; stores sync through one of them.
    private var hubs: [(port: UInt16, process: Process, arguments: [String])] = []
    /// The hubs' database as `hub --db` takes it; nil keeps SQLite in the hub's data directory.
    public var hubDatabaseURL: String?
    public private(set) var stores: [String: StoreHandle] = [:]
    private var storeProcesses: [String: Process] = [:]
    private var storeArguments: [String: [String]] = [:]
    public var syncIntervalMilliseconds = 200
    public var handshakeTimeoutMilliseconds = 5_000
    /// Start stores from an edge.toml (with the POS address overridden by a flag).
    public var storesUseConfigFile = false
    /// More `edge run` arguments for every store started from now on.
    public var extraStoreArguments: [String] = []
    /// The hub's sync address once started.
    public var hubAddress: SocketAddress { SocketAddress(host: "127.0.0.1", port: hubPort) }

    public init(binaries: URL, workDirectory: URL) throws {
        self.binaries = binaries
        self.workDirectory = workDirectory
        for tool in ["edge", "hub", "simulate"]
        where !FileManager.default.isExecutableFile(atPath: binaries.appendingPathComponent(tool).path) {
            throw HarnessError("\(tool) is not built in \(binaries.path); run `swift build` first")
        }
        try FileManager.default.createDirectory(at: workDirectory, withIntermediateDirectories: true)
    }

    /// Where `edge`, `hub` and `simulate` were built: LOYALTY_BIN_DIR, the running
    /// executable's directory, or `.build/debug` under the current directory.
    public static func locateBinaries() -> URL {
        if let dir = ProcessInfo.processInfo.environment["LOYALTY_BIN_DIR"] { return URL(fileURLWithPath: dir) }
        var candidates: [URL] = []
        if let executable = Bundle.main.executableURL { candidates.append(executable.deletingLastPathComponent()) }
        candidates.append(
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug"))
        return candidates.first {
            FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("edge").path)
        } ?? candidates.last!
    }

    // MARK: Processes

    @discardableResult
    private func launch(_ tool: String, _ arguments: [String], log: String) throws -> Process {
        let process = Process()
        process.executableURL = binaries.appendingPathComponent(tool)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["LOYALTY_DIE_WITH_PARENT"] = "1"
        process.environment = environment
        let logURL = workDirectory.appendingPathComponent(log)
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.lock()
        children.append(process)
        lock.unlock()
        return process
    }

    /// Runs a tool to completion and returns its standard output.
    public func runTool(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = binaries.appendingPathComponent(tool)
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw HarnessError("\(tool) \(arguments.joined(separator: " ")) failed: \(errorText)")
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Terminates every process started (SIGTERM, then SIGKILL after two seconds).
    public func stop() {
        lock.lock()
        let running = children
        children.removeAll()
        lock.unlock()
        for process in running where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(2)
        for process in running {
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        for process in running { process.waitUntilExit() }
    }

    deinit { stop() }

    // MARK: Nodes

    private var hubData: String { workDirectory.appendingPathComponent("hub").path }
    /// The hub's data directory, for running `hub` tools against it.
    public var hubDataPath: String { hubData }
    /// How `hub` tools are told where the hub database is.
    public var hubDataArguments: [String] {
        hubDatabaseURL.map { ["--db", $0] } ?? ["--data", hubData]
    }
    /// The hub's operator console (HTTP) port.
    public private(set) var consolePort: UInt16 = 0

    public func startHub() throws {
        let keyPath = workDirectory.appendingPathComponent("hub.key").path
        hubKey = try runTool("hub", ["keygen", "--key", keyPath])
        hubPort = try startHubProcess(console: true)
    }

    /// Starts one more hub process with the same key and database (PostgreSQL: several hubs
    /// serve stores from one database) and returns its sync port, for `addStore(via:)`.
    @discardableResult
    public func startAnotherHub() throws -> UInt16 {
        try startHubProcess(console: false)
    }

    private func startHubProcess(console: Bool) throws -> UInt16 {
        let keyPath = workDirectory.appendingPathComponent("hub.key").path
        let port = try Self.freePort()
        if console { consolePort = try Self.freePort() }
        let arguments =
            ["run", "--data", hubData] + (hubDatabaseURL.map { ["--db", $0] } ?? []) + [
                "--key", keyPath, "--listen", "127.0.0.1:\(port)", "--handshake-timeout-ms",
                "\(handshakeTimeoutMilliseconds)", "--revocation-check-ms", "500", "--http",
                console ? "127.0.0.1:\(consolePort)" : "off",
            ]
        let process = try launch("hub", arguments, log: "hub\(hubs.isEmpty ? "" : "-\(hubs.count + 1)").log")
        hubs.append((port, process, arguments))
        try waitForPort(port, what: "hub")
        if console { try waitForPort(consolePort, what: "hub console") }
        return port
    }

    /// kill -9s hub `index` (0: the first) and starts it again on the same port and database.
    public func restartHub(_ index: Int) throws {
        let hub = hubs[index]
        kill(hub.process.processIdentifier, SIGKILL)
        hub.process.waitUntilExit()
        let log = "hub\(index == 0 ? "" : "-\(index + 1)")-restarted.log"
        hubs[index].process = try launch("hub", hub.arguments, log: log)
        try waitForPort(hub.port, what: "restarted hub")
    }

    /// Generates a store key, enrolls it at the hub and starts the store behind a relay.
    @discardableResult
    public func addStore(name: String, partner: String, via hub: UInt16? = nil) throws -> StoreHandle {
        let keyPath = workDirectory.appendingPathComponent("\(name).key").path
        let publicKey = try runTool("edge", ["keygen", "--key", keyPath])
        let idText = try runTool(
            "hub",
            ["store", "enroll"] + hubDataArguments + ["--name", name, "--partner", partner, "--public-key", publicKey])
        guard let id = UInt32(idText) else { throw HarnessError("hub store enroll printed \(idText)") }
        let relayPort = try Self.freePort()
        let relay = try launch(
            "simulate",
            [
                "relay", "--listen", "127.0.0.1:\(relayPort)", "--to", "127.0.0.1:\(hub ?? hubPort)", "--faults",
                faultsFile(name).path,
            ], log: "relay-\(name).log")
        try waitForPort(relayPort, what: "relay for \(name)")
        let posPort = try Self.freePort()
        let socketPath = workDirectory.appendingPathComponent("\(name).sock").path
        var arguments =
            [
                "run", "--node", "\(id)", "--data", workDirectory.appendingPathComponent(name).path, "--key", keyPath,
                "--pos", "127.0.0.1:\(posPort)", "--pos-socket", socketPath, "--hub", "127.0.0.1:\(relayPort)",
                "--hub-key", hubKey, "--sync-interval-ms", "\(syncIntervalMilliseconds)", "--partner", partner,
            ] + extraStoreArguments
        if storesUseConfigFile {
            // Everything in edge.toml but the POS address, which a flag must override.
            let config = workDirectory.appendingPathComponent("\(name).toml")
            let text = """
                node = \(id)
                data = "\(workDirectory.appendingPathComponent(name).path)"
                key = "\(keyPath)"
                pos = "127.0.0.1:1"
                pos_socket = "\(socketPath)"
                hub = "127.0.0.1:\(relayPort)"
                hub_key = "\(hubKey)"
                sync_interval_ms = \(syncIntervalMilliseconds)
                log_format = "json"

                """
            try text.write(to: config, atomically: true, encoding: .utf8)
            arguments = ["run", "--config", config.path, "--pos", "127.0.0.1:\(posPort)"] + extraStoreArguments
        }
        storeArguments[name] = arguments
        storeProcesses[name] = try launch("edge", arguments, log: "\(name).log")
        try waitForPort(posPort, what: "store \(name)")
        let handle = StoreHandle(
            name: name, id: id, pos: SocketAddress(host: "127.0.0.1", port: posPort), posSocket: socketPath,
            relayPID: relay.processIdentifier)
        stores[name] = handle
        return handle
    }

    public func pos(_ store: String) throws -> PosClient {
        guard let handle = stores[store] else { throw HarnessError("no store \(store)") }
        return try PosClient(address: handle.pos)
    }

    /// The member's merged balance at the hub, read from its database by `hub member`.
    public func hubBalance(card: String) throws -> Int64? {
        guard let line = try? runTool("hub", ["member"] + hubDataArguments + ["--card", card]) else { return nil }
        return try JSONValue.parse(Array(line.utf8))["balance"]?.intValue
    }

    /// Kills the store's process with SIGKILL: no shutdown, no flush, like a power cut.
    public func kill9(_ store: String) throws {
        guard let process = storeProcesses[store] else { throw HarnessError("no store \(store)") }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Starts a stopped store again on the same data directory and POS port.
    public func restartStore(_ store: String) throws {
        guard let arguments = storeArguments[store], let handle = stores[store] else {
            throw HarnessError("no store \(store)")
        }
        if let old = storeProcesses[store], old.isRunning { throw HarnessError("store \(store) is still running") }
        storeProcesses[store] = try launch("edge", arguments, log: "\(store)-restarted.log")
        try waitForPort(handle.pos.port, what: "store \(store) after restart")
    }

    /// Signs and publishes a rules file (TOML text) at the hub; returns what the hub printed.
    @discardableResult
    public func publishRules(_ toml: String) throws -> String {
        let file = workDirectory.appendingPathComponent("rules-\(UUID().uuidString).toml")
        try toml.write(to: file, atomically: true, encoding: .utf8)
        return try runTool(
            "hub",
            [
                "rules", "publish",
            ] + hubDataArguments + [
                "--key", workDirectory.appendingPathComponent("hub.key").path,
                "--file", file.path,
            ])
    }

    /// Creates promo codes at the hub.
    public func createPromoCodes(points: Int, count: Int) throws -> [String] {
        try runTool("hub", ["promo", "create"] + hubDataArguments + ["--points", "\(points)", "--count", "\(count)"])
            .split(separator: "\n").map(String.init)
    }

    /// Revokes the store's key at the hub.
    public func revoke(_ store: String) throws {
        _ = try runTool("hub", ["store", "revoke"] + hubDataArguments + ["--name", store])
    }

    /// Prints the last lines of every process log (for a failed test's output).
    public func dumpLogs(lines: Int = 25) {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: workDirectory.path)) ?? []
        for name in files.sorted() where name.hasSuffix(".log") {
            let text = (try? String(contentsOf: workDirectory.appendingPathComponent(name), encoding: .utf8)) ?? ""
            print("---- \(name) (last \(lines) lines)")
            print(text.split(separator: "\n").suffix(lines).joined(separator: "\n"))
        }
    }

    /// The hub's log so far (for checking what it reported).
    public func hubLog() -> String {
        (try? String(contentsOf: workDirectory.appendingPathComponent("hub.log"), encoding: .utf8)) ?? ""
    }

    /// Cuts the store's link to the hub (its relay drops and refuses connections).
    public func cut(_ store: String) throws {
        guard let handle = stores[store] else { throw HarnessError("no store \(store)") }
        kill(handle.relayPID, SIGUSR1)
    }

    public func restore(_ store: String) throws {
        guard let handle = stores[store] else { throw HarnessError("no store \(store)") }
        kill(handle.relayPID, SIGUSR2)
    }

    private func faultsFile(_ store: String) -> URL { workDirectory.appendingPathComponent("faults-\(store).txt") }

    /// Degrades the store's link: latency, bandwidth, or a one-way partition (`LinkFaults()` heals it).
    public func degrade(_ store: String, _ faults: LinkFaults) throws {
        guard let handle = stores[store] else { throw HarnessError("no store \(store)") }
        try faults.description.write(to: faultsFile(store), atomically: true, encoding: .utf8)
        kill(handle.relayPID, SIGHUP)
    }

    /// Drops the store's relayed connections at once (a reset); it reconnects.
    public func resetLink(_ store: String) throws {
        guard let handle = stores[store] else { throw HarnessError("no store \(store)") }
        try "reset".write(to: faultsFile(store), atomically: true, encoding: .utf8)
        kill(handle.relayPID, SIGHUP)
    }

    /// Whether the store's process is running.
    public func isRunning(_ store: String) -> Bool { storeProcesses[store]?.isRunning ?? false }

    /// The store's database file.
    public func storeDatabase(_ store: String) -> String {
        workDirectory.appendingPathComponent(store).appendingPathComponent("edge.sqlite").path
    }

    /// The hub's database file.
    public var hubDatabase: String { hubData + "/hub.sqlite" }

    // MARK: Helpers

    /// Polls `condition` every 50 ms until it holds or `seconds` pass.
    public func wait(upTo seconds: Double, for what: String, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? condition()) == true { return }
            usleep(50_000)
        }
        if try condition() { return }
        throw HarnessError("timed out after \(seconds) s waiting for \(what); logs in \(workDirectory.path)")
    }

    private func waitForPort(_ port: UInt16, what: String) throws {
        try wait(upTo: 15, for: "\(what) to listen on port \(port)") {
            (try? BlockingLineClient(connectTo: SocketAddress(host: "127.0.0.1", port: port), timeoutSeconds: 1)) != nil
        }
    }

    /// A port the kernel says is free now (bind to port 0, read it back, close).
    public static func freePort() throws -> UInt16 {
        guard let port = SocketAddress.freeLoopbackPort() else { throw HarnessError("cannot find a free port") }
        return port
    }
}

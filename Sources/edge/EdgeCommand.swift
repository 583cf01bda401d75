import ArgumentParser
import EdgeNode
import Foundation
import Logging
import NodeKit
import SyncProtocol

@main
struct Edge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge",
        abstract: "The store node of the loyalty coalition: POS API, offline replica, sync with the hub.",
        subcommands: [Run.self, Init.self, Keygen.self, Pos.self])
}

extension Edge {
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create this store's long-term key (file mode 0600) and print its public key for enrollment.")

        @Option(help: "Where to write the secret key; an existing file is never overwritten.")
        var key: String

        func run() throws {
            let pair = try KeyFile.generate(at: key)
            print(pair.publicKey.hex)
        }
    }

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a commented example configuration file to start from.")

        @Argument(help: "Where to write it (refuses to overwrite).")
        var path: String = "edge.toml"

        func run() throws {
            guard !FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("\(path) exists; not overwriting it")
            }
            try EdgeConfigFile.example.write(toFile: path, atomically: true, encoding: .utf8)
            print("wrote \(path); set node, key, hub and hub_key, then run: edge run --config \(path)")
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the store node until SIGINT or SIGTERM.",
            discussion: "Settings come from --config (TOML, see `edge init`); flags override the file.")

        @Option(help: "Configuration file (TOML).")
        var config: String?
        @Option(help: "Store id given by `hub store enroll`.")
        var node: UInt32?
        @Option(help: "Data directory (holds edge.sqlite).")
        var data: String?
        @Option(help: "This store's key file (from `edge keygen`).")
        var key: String?
        @Option(help: "POS API address, HOST:PORT (default 127.0.0.1:7401).")
        var pos: String?
        @Option(name: .customLong("pos-socket"), help: "Also serve the POS API on this Unix-domain socket.")
        var posSocket: String?
        @Option(
            name: .customLong("scanner"),
            help: "A lane's barcode scanner: LANE=tty:/dev/ttyACM0, LANE=fifo:/run/loyalty/lane1 or LANE=tcp:HOST:PORT."
        )
        var scanners: [String] = []
        @Option(help: "The partner (brand) this store belongs to; selects its economics in the hub's rules.")
        var partner: String?
        @Option(help: "The hub's sync address, HOST:PORT (default 127.0.0.1:7400).")
        var hub: String?
        @Option(name: .customLong("hub-key"), help: "The hub's public key (hex); the store refuses any other hub.")
        var hubKey: String?
        @Option(name: .customLong("sync-interval-ms"), help: "How often to push and pull while online (default 1000).")
        var syncInterval: UInt64?
        @Option(help: "Offline policy: largest uncovered part of one redemption, in points (0: none).")
        var offlineMaxPointsPerRedemption: UInt64?
        @Option(help: "Offline policy: uncovered points per member during one outage.")
        var offlineMaxPointsPerMember: UInt64?
        @Option(help: "Offline policy: uncovered redemptions per member during one outage.")
        var offlineMaxRedemptionsPerMember: UInt64?
        @Option(help: "Offline policy: uncovered points per store during one outage.")
        var offlineMaxPointsPerStore: UInt64?
        @Option(help: "Offline policy: uncovered redemptions per store during one outage.")
        var offlineMaxRedemptionsPerStore: UInt64?
        @Option(help: "Offline policy: no uncovered redemption once an outage is older than this.")
        var offlineMaxOutageMinutes: UInt64?
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String?
        @Option(name: .customLong("log-format"), help: "text or json (one object per line).")
        var logFormat: String?

        /// The file's settings with the flags laid over them, checked.
        func resolved() throws -> (EdgeConfiguration, Logger.Level, String) {
            let file = try config.map { try EdgeConfigFile.load(path: $0) } ?? EdgeConfigFile()
            guard let node = node ?? file.node, node > 0 else {
                throw ValidationError(
                    "the store id is missing: --node or `node` in the config (from `hub store enroll`)")
            }
            guard let data = data ?? file.data else { throw ValidationError("the data directory is missing: --data") }
            guard let key = key ?? file.key else { throw ValidationError("the key file is missing: --key") }
            let posText = pos ?? file.pos ?? "127.0.0.1:7401"
            guard let posAddress = SocketAddress(posText) else {
                throw ValidationError("pos must be HOST:PORT, got \(posText)")
            }
            let hubText = hub ?? file.hub ?? "127.0.0.1:7400"
            guard let hubAddress = SocketAddress(hubText) else {
                throw ValidationError("hub must be HOST:PORT, got \(hubText)")
            }
            guard let hubKeyText = hubKey ?? file.hubKey, let hubPublicKey = PublicKey(hex: hubKeyText) else {
                throw ValidationError("the hub key is missing or not 64 hex digits: --hub-key or `hub_key`")
            }
            let levelText = logLevel ?? file.logLevel ?? "info"
            guard let level = Logger.Level(rawValue: levelText) else {
                throw ValidationError("unknown log level \(levelText)")
            }
            let format = logFormat ?? file.logFormat ?? "text"
            guard format == "text" || format == "json" else { throw ValidationError("log format must be text or json") }
            var scannerConfigurations = (file.scanner ?? []).compactMap {
                ScannerConfiguration("\($0.lane)=\($0.source)")
            }
            for scanner in scanners {
                guard let parsed = ScannerConfiguration(scanner) else {
                    throw ValidationError(
                        "--scanner \(scanner): expected LANE=tty:PATH, LANE=fifo:PATH or LANE=tcp:HOST:PORT")
                }
                scannerConfigurations.append(parsed)
            }
            var configuration = EdgeConfiguration(
                node: NodeID(node), dataDirectory: data, keyFile: key, pos: posAddress, hub: hubAddress,
                hubKey: hubPublicKey)
            configuration.syncIntervalMilliseconds = syncInterval ?? file.syncIntervalMs ?? 1_000
            configuration.posSocket = posSocket ?? file.posSocket
            configuration.partner = partner ?? file.partner
            configuration.scanners = scannerConfigurations
            // Flags over the file's [offline] section over "allow nothing".
            let flags = OfflinePolicySection(
                maxPointsPerRedemption: offlineMaxPointsPerRedemption, maxPointsPerMember: offlineMaxPointsPerMember,
                maxRedemptionsPerMember: offlineMaxRedemptionsPerMember, maxPointsPerStore: offlineMaxPointsPerStore,
                maxRedemptionsPerStore: offlineMaxRedemptionsPerStore, maxOutageMinutes: offlineMaxOutageMinutes)
            configuration.offlinePolicy = flags.policy(over: file.offline?.policy() ?? OfflinePolicy())
            return (configuration, level, format)
        }

        func run() throws {
            prepareProcessSignals()
            let (configuration, level, format) = try resolved()
            var logger = Logger(label: "edge") { label -> any LogHandler in
                format == "json" ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            }
            logger.logLevel = level
            logger[metadataKey: "node"] = "\(configuration.node.rawValue)"
            let edge = try EdgeNode(configuration: configuration, logger: logger)
            if shouldWatchParent { try edge.stopWhenParentExits() }
            edge.run()
        }
    }

    struct Pos: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Call a POS API method of a running store node and print the result as JSON.",
            discussion: "Example: edge pos account.balance --params '{\"card\":\"4600000000017\"}'")

        @Argument(help: "Method name, e.g. member.identify, checkout.purchase, node.status.")
        var method: String
        @Option(help: "Parameters as a JSON object.")
        var params: String = "{}"
        @Option(help: "The node's POS address, HOST:PORT.")
        var address: String = "127.0.0.1:7401"
        @Option(help: "Use the node's Unix-domain socket instead of TCP.")
        var socket: String?

        func run() throws {
            guard let target = SocketAddress(address) else { throw ValidationError("--address must be HOST:PORT") }
            guard case .object(let fields) = try? JSONValue.parse(Array(params.utf8)) else {
                throw ValidationError("--params must be a JSON object")
            }
            do {
                let client = try socket.map { try PosClient(socketPath: $0) } ?? PosClient(address: target)
                let result = try client.call(method, fields)
                print(result.jsonLine)
            } catch let error as PosError {
                FileHandle.standardError.write(Data("error \(error.code): \(error.message)\n".utf8))
                throw ExitCode(2)
            }
        }
    }
}

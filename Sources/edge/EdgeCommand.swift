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
        subcommands: [Run.self, Keygen.self, Pos.self])
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

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the store node until SIGINT or SIGTERM.")

        @Option(help: "Store id given by `hub store enroll`.")
        var node: UInt32
        @Option(help: "Data directory (holds edge.sqlite).")
        var data: String
        @Option(help: "This store's key file (from `edge keygen`).")
        var key: String
        @Option(help: "POS API address, HOST:PORT.")
        var pos: String = "127.0.0.1:7401"
        @Option(name: .customLong("pos-socket"), help: "Also serve the POS API on this Unix-domain socket.")
        var posSocket: String?
        @Option(
            name: .customLong("scanner"),
            help: "A lane's barcode scanner: LANE=tty:/dev/ttyACM0, LANE=fifo:/run/loyalty/lane1 or LANE=tcp:HOST:PORT."
        )
        var scanners: [String] = []
        @Option(help: "The hub's sync address, HOST:PORT.")
        var hub: String = "127.0.0.1:7400"
        @Option(name: .customLong("hub-key"), help: "The hub's public key (hex); the store refuses any other hub.")
        var hubKey: String
        @Option(name: .customLong("sync-interval-ms"), help: "How often to push and pull while online.")
        var syncInterval: UInt64 = 1_000
        @Option(help: "Offline policy: largest uncovered part of one redemption, in points (0: none).")
        var offlineMaxPointsPerRedemption: UInt64 = 0
        @Option(help: "Offline policy: uncovered points per member during one outage.")
        var offlineMaxPointsPerMember: UInt64 = 0
        @Option(help: "Offline policy: uncovered redemptions per member during one outage.")
        var offlineMaxRedemptionsPerMember: UInt64 = 0
        @Option(help: "Offline policy: uncovered points per store during one outage.")
        var offlineMaxPointsPerStore: UInt64 = 0
        @Option(help: "Offline policy: uncovered redemptions per store during one outage.")
        var offlineMaxRedemptionsPerStore: UInt64 = 0
        @Option(help: "Offline policy: no uncovered redemption once an outage is older than this.")
        var offlineMaxOutageMinutes: UInt64 = 0
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"

        func validate() throws {
            guard node > 0 else { throw ValidationError("--node must be the store id from enrollment (1 or more)") }
            guard SocketAddress(pos) != nil else { throw ValidationError("--pos must be HOST:PORT") }
            guard SocketAddress(hub) != nil else { throw ValidationError("--hub must be HOST:PORT") }
            guard PublicKey(hex: hubKey) != nil else { throw ValidationError("--hub-key must be 64 hex digits") }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("unknown --log-level \(logLevel)")
            }
            for scanner in scanners where ScannerConfiguration(scanner) == nil {
                throw ValidationError(
                    "--scanner \(scanner): expected LANE=tty:PATH, LANE=fifo:PATH or LANE=tcp:HOST:PORT")
            }
        }

        func run() throws {
            var logger = Logger(label: "edge")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            logger[metadataKey: "node"] = "\(node)"
            var configuration = EdgeConfiguration(
                node: NodeID(node), dataDirectory: data, keyFile: key, pos: SocketAddress(pos)!,
                hub: SocketAddress(hub)!,
                hubKey: PublicKey(hex: hubKey)!)
            configuration.syncIntervalMilliseconds = syncInterval
            configuration.posSocket = posSocket
            configuration.scanners = scanners.compactMap(ScannerConfiguration.init)
            var policy = OfflinePolicy()
            policy.maxPointsPerRedemption = offlineMaxPointsPerRedemption
            policy.maxPointsPerMember = offlineMaxPointsPerMember
            policy.maxRedemptionsPerMember = offlineMaxRedemptionsPerMember
            policy.maxPointsPerStore = offlineMaxPointsPerStore
            policy.maxRedemptionsPerStore = offlineMaxRedemptionsPerStore
            policy.maxOutageMilliseconds = offlineMaxOutageMinutes * 60_000
            configuration.offlinePolicy = policy
            prepareProcessSignals()
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

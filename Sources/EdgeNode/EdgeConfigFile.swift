import Foundation
import NodeKit
import TOMLKit

/// `edge.toml`: the store node's configuration file. Every key is optional; command-line
/// flags override the file, and built-in defaults fill the rest.
public struct EdgeConfigFile: Decodable, Sendable, Equatable {
    public struct Scanner: Decodable, Sendable, Equatable {
        public var lane: String
        public var source: String
    }

    public var node: UInt32?
    public var partner: String?
    public var data: String?
    public var key: String?
    public var pos: String?
    public var posSocket: String?
    public var hub: String?
    public var hubKey: String?
    public var syncIntervalMs: UInt64?
    public var logLevel: String?
    public var logFormat: String?
    public var offline: OfflinePolicySection?
    public var scanner: [Scanner]?

    enum CodingKeys: String, CodingKey {
        case node, partner, data, key, pos, hub, offline, scanner
        case posSocket = "pos_socket"
        case hubKey = "hub_key"
        case syncIntervalMs = "sync_interval_ms"
        case logLevel = "log_level"
        case logFormat = "log_format"
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init() {}

    /// Reads and decodes a configuration file; errors name the file and, for syntax, the line.
    public static func load(path: String) throws -> EdgeConfigFile {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw Failure(description: "cannot read config \(path): \(error.localizedDescription)")
        }
        return try parse(text, name: path)
    }

    public static func parse(_ text: String, name: String = "edge.toml") throws -> EdgeConfigFile {
        do {
            let config = try TOMLDecoder().decode(EdgeConfigFile.self, from: text)
            for scanner in config.scanner ?? [] where ScannerConfiguration("\(scanner.lane)=\(scanner.source)") == nil {
                throw Failure(
                    description: "\(name): scanner for lane \(scanner.lane) has an invalid source '\(scanner.source)'")
            }
            return config
        } catch let error as TOMLParseError {
            throw Failure(
                description:
                    "\(name) line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)"
            )
        } catch let error as Failure {
            throw error
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw Failure(description: "\(name): '\(key)' has the wrong type (\(context.debugDescription))")
        } catch {
            throw Failure(description: "\(name): \(error)")
        }
    }

    /// The commented example `edge init` writes.
    public static let example = """
        # Store node configuration (edge.toml). Flags given to `edge run` override these values.

        # Store id, as printed by `hub store enroll`, and the partner (brand) it belongs to:
        # the hub's signed rules give each partner its own economics.
        node = 1
        partner = "grocer"
        # Where the replica (edge.sqlite) lives. Keep it on a disk that honours fsync.
        data = "/var/lib/loyalty-edge"
        # This store's key, created by `edge keygen` (mode 0600).
        key = "/etc/loyalty-edge/store.key"

        # POS API: JSON-RPC 2.0, one object per line, over TCP and a Unix-domain socket.
        pos = "127.0.0.1:7401"
        pos_socket = "/run/loyalty-edge/pos.sock"

        # The hub, and its public key (from `hub keygen`); no other hub is accepted.
        hub = "hub.example.net:7400"
        hub_key = "0000000000000000000000000000000000000000000000000000000000000000"
        sync_interval_ms = 1000

        # Logs go to standard error: "json" (one object per line, for journald) or "text".
        log_level = "info"
        log_format = "json"

        # Offline risk policy: points members may redeem beyond the rights this store holds
        # while the hub is unreachable. All zero (the default) allows none. Used until the
        # hub's signed rules arrive, which carry the coalition's policy.
        [offline]
        max_points_per_redemption = 0
        max_points_per_member = 0
        max_redemptions_per_member = 0
        max_points_per_store = 0
        max_redemptions_per_store = 0
        max_outage_minutes = 0

        # Barcode scanners, per lane: tty:/dev/..., fifo:/path or tcp:HOST:PORT.
        # [[scanner]]
        # lane = "1"
        # source = "tty:/dev/ttyACM0"

        """
}

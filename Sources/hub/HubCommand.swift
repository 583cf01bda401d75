import ArgumentParser
import Foundation
import HubConsole
import HubNode
import Logging
import NodeKit
import Prometheus
import SyncProtocol

@main
struct Hub: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub",
        abstract: "The coalition hub: merges every store's ledger, hands out redemption rights, enrolls stores.",
        subcommands: [
            Run.self, Keygen.self, Store.self, Rules.self, Promo.self, Report.self, Expire.self, Member.self,
            Token.self,
        ])
}

struct DataOption: ParsableArguments {
    @Option(help: "Hub data directory (holds hub.sqlite unless --db names another database).")
    var data: String?
    @Option(
        help: ArgumentHelp(
            "The hub database: sqlite:PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME].",
            discussion: "Defaults to sqlite:DATA/hub.sqlite. Several hubs may serve stores from one PostgreSQL."))
    var db: String?

    func validate() throws {
        if let db { _ = try HubDatabaseLocation(parsing: db) }
        guard data != nil || db != nil else { throw ValidationError("give --data DIR or --db DATABASE") }
    }

    var location: HubDatabaseLocation {
        get throws {
            if let db { return try HubDatabaseLocation(parsing: db) }
            return .sqlite(path: (data ?? ".") + "/hub.sqlite")
        }
    }

    func openLedger() throws -> any SQLDatabase {
        if let data { try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true) }
        return try HubLedger.open(try location)
    }
}

extension Hub {
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the hub's long-term key (file mode 0600) and print its public key for store configs.")

        @Option(help: "Where to write the secret key; an existing file is never overwritten.")
        var key: String

        func run() throws {
            print(try KeyFile.generate(at: key).publicKey.hex)
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve store sessions until SIGINT or SIGTERM.")

        @OptionGroup var options: DataOption
        @Option(help: "The hub's key file (from `hub keygen`).")
        var key: String
        @Option(help: "Sync address for stores, HOST:PORT.")
        var listen: String = "127.0.0.1:7400"
        @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
        var logLevel: String = "info"
        @Option(
            name: .customLong("handshake-timeout-ms"),
            help: "Drop a connection that has not completed the handshake and hello in this time.")
        var handshakeTimeout: UInt64 = 5_000
        @Option(
            name: .customLong("revocation-check-ms"), help: "How often live sessions are checked against revocations.")
        var revocationCheck: UInt64 = 2_000
        @Option(
            name: .customLong("handshakes-per-second"),
            help: "Handshakes one peer address may start per second (a store box has one address).")
        var handshakesPerSecond: Double = 5
        @Option(name: .customLong("handshake-burst"), help: "Handshakes one peer address may start at once.")
        var handshakeBurst: Double = 10
        @Option(
            help:
                "Operator console address, HOST:PORT: the HTTP API, /metrics, /healthz and the dashboard. 'off' disables it."
        )
        var http: String = "127.0.0.1:7480"

        func validate() throws {
            guard SocketAddress(listen) != nil else { throw ValidationError("--listen must be HOST:PORT") }
            guard http == "off" || SocketAddress(http) != nil else {
                throw ValidationError("--http must be HOST:PORT or off")
            }
            guard Logger.Level(rawValue: logLevel) != nil else {
                throw ValidationError("unknown --log-level \(logLevel)")
            }
        }

        func run() throws {
            var logger = Logger(label: "hub")
            logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            prepareProcessSignals()
            var configuration = HubConfiguration(
                dataDirectory: options.data ?? ".", keyFile: key, listen: SocketAddress(listen)!)
            configuration.database = try options.location
            configuration.handshakeTimeoutMilliseconds = handshakeTimeout
            configuration.revocationCheckMilliseconds = revocationCheck
            configuration.handshakesPerSecond = handshakesPerSecond
            configuration.handshakeBurst = handshakeBurst
            let registry = PrometheusCollectorRegistry()
            let status = HubStatus(metrics: PrometheusMetricsFactory(registry: registry))
            let hub = try HubNode(configuration: configuration, logger: logger, status: status)
            if shouldWatchParent { try hub.stopWhenParentExits() }
            var console: Console?
            if let address = SocketAddress(http) {
                var consoleLogger = logger
                consoleLogger[metadataKey: "component"] = "console"
                let started = Console(
                    configuration: ConsoleConfiguration(
                        host: address.host, port: Int(address.port), database: configuration.databaseLocation,
                        hubKey: try KeyFile.load(from: key).publicKey),
                    status: status, registry: registry, logger: consoleLogger)
                let port = try started.start()
                logger.info("operator console listening", metadata: ["address": "\(address.host):\(port)"])
                console = started
            }
            hub.run()
            console?.stop()
        }
    }

    struct Store: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enroll, revoke and list the stores allowed to sync.",
            subcommands: [Enroll.self, Revoke.self, List.self])

        struct Enroll: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Allow a store's public key; prints the store id to configure on the store (--node).")
            @OptionGroup var options: DataOption
            @Option(help: "A unique store name.")
            var name: String
            @Option(help: "The partner (brand) the store belongs to.")
            var partner: String
            @Option(name: .customLong("public-key"), help: "The store's public key, as printed by `edge keygen`.")
            var publicKey: String

            func run() throws {
                guard let key = PublicKey(hex: publicKey) else {
                    throw ValidationError("--public-key must be 64 hex digits")
                }
                let db = try options.openLedger()
                let store = try HubLedger().enroll(db, name: name, partner: partner, key: key)
                print(store.id.rawValue)
            }
        }

        struct Revoke: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Refuse a store's key from its next handshake on.")
            @OptionGroup var options: DataOption
            @Option(help: "The store's name.")
            var name: String

            func run() throws {
                let store = try HubLedger().revoke(try options.openLedger(), name: name)
                print("revoked store \(store.name) (id \(store.id.rawValue))")
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List enrolled stores as JSON lines.")
            @OptionGroup var options: DataOption

            func run() throws {
                for store in try HubLedger().stores(try options.openLedger()) {
                    let line = JSONValue.object([
                        "id": .int(Int64(store.id.rawValue)), "name": .string(store.name),
                        "partner": .string(store.partner),
                        "publicKey": .string(store.publicKey.hex), "revoked": .bool(store.revoked),
                    ])
                    print(line.jsonLine)
                }
            }
        }
    }

    struct Rules: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Publish the coalition's rules: signed by the hub, pushed to every store at its next sync.",
            subcommands: [Publish.self, Show.self])

        struct Publish: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract:
                    "Sign and publish the next version of a rules file (TOML: [default], [partners.NAME], [offline], [bonuses], [tiers], [[campaigns]], [placement], [feed] with [feed.groups])."
            )
            @OptionGroup var options: DataOption
            @Option(help: "The hub's key file; the signature stores verify.")
            var key: String
            @Option(help: "The rules file.")
            var file: String

            func run() throws {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                let document = try HubLedger().publishRules(
                    try options.openLedger(), try RulesFile.parse(text), hub: try KeyFile.load(from: key))
                print("published rules version \(document.version)")
            }
        }

        struct Show: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Show the rules in force as JSON (the console's /api/v1/rules also lists every version).")
            @OptionGroup var options: DataOption

            func run() throws {
                let rules = try OperatorQueries().rules(try options.openLedger())
                guard let current = rules["current"], current != .null else {
                    print("no rules published yet")
                    return
                }
                print(current.jsonLine)
            }
        }
    }

    struct Promo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Promo codes: single-use across the coalition, credited through the hub only.",
            subcommands: [Create.self])

        struct Create: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create promo codes and print them, one per line.")
            @OptionGroup var options: DataOption
            @Option(help: "Points each code credits to the member's promo account.")
            var points: UInt64
            @Option(help: "How many codes to create.")
            var count: Int = 1

            func run() throws {
                for code in try HubLedger().createPromoCodes(try options.openLedger(), points: points, count: count) {
                    print(code)
                }
            }
        }
    }

    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Reports for the coalition operator and the partners (the HTTP API serves the same).",
            subcommands: [Clearing.self, Liability.self, Exposure.self, RFM.self, Partners.self])

        struct Format: ParsableArguments {
            @Option(help: "json or csv.") var format: String = "json"

            func validate() throws {
                guard format == "json" || format == "csv" else { throw ValidationError("--format must be json or csv") }
            }

            func print(_ report: OperatorReport) {
                Swift.print(
                    format == "csv" ? report.csv : report.json.jsonLine, terminator: format == "csv" ? "" : "\n")
            }
        }

        struct Output: ParsableArguments {
            @OptionGroup var format: Format
            @Option(help: "Limit the report to one partner, as that partner's API token sees it.")
            var partner: String?

            func print(_ report: OperatorReport) { format.print(report) }
        }

        struct Period: ParsableArguments {
            @Option(help: "First day, YYYY-MM-DD (programme time zone).") var from: String
            @Option(help: "Last day, YYYY-MM-DD, inclusive.") var to: String

            func validate() throws {
                guard let first = Campaign.day(parsing: from), let last = Campaign.day(parsing: to) else {
                    throw ValidationError("--from and --to must be YYYY-MM-DD")
                }
                guard last >= first else { throw ValidationError("--to is before --from") }
            }

            var days: (first: Int64, last: Int64) { (Campaign.day(parsing: from)!, Campaign.day(parsing: to)!) }
        }

        struct RFM: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "rfm",
                abstract: "Members per RFM segment (Core, Loyal, Whales, Newcomers, Sleepers, Lost) as of a day.",
                discussion:
                    "Defaults: Newcomer for 30 days after joining; Lost after 180 days without a purchase, Sleeper after 60; recent members are Core with 4+ purchases and 20,000.00+ in 90 days, Whales with that spend in fewer purchases, Loyal otherwise."
            )
            @OptionGroup var options: DataOption
            @Option(name: .customLong("as-of"), help: "The day, YYYY-MM-DD.")
            var asOf: String
            @Option(help: "Days a new member counts as a Newcomer.") var newcomerDays: Int64 = 30
            @Option(help: "Days without a purchase after which a member is a Sleeper.") var sleeperDays: Int64 = 60
            @Option(help: "Days without a purchase after which a member is Lost.") var lostDays: Int64 = 180
            @Option(help: "Purchases in the window that make a member frequent.") var frequentPurchases: Int = 4
            @Option(help: "Spend in the window (minor units) that counts as large.") var largeSpend: UInt64 = 2_000_000
            @OptionGroup var output: Format

            func run() throws {
                guard let today = Campaign.day(parsing: asOf) else {
                    throw ValidationError("--as-of must be YYYY-MM-DD")
                }
                var thresholds = RFMThresholds()
                thresholds.newcomerDays = newcomerDays
                thresholds.sleeperDays = sleeperDays
                thresholds.lostDays = lostDays
                thresholds.frequentPurchases = frequentPurchases
                thresholds.largeSpendMinor = largeSpend
                let report = try OperatorQueries().rfm(try options.openLedger(), asOf: today, thresholds: thresholds)
                output.print(report)
            }
        }

        struct Partners: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Per partner: participants, purchases, frequency, average check and retention for a period.")
            @OptionGroup var options: DataOption
            @OptionGroup var period: Period
            @OptionGroup var output: Output

            func run() throws {
                let days = period.days
                output.print(
                    try OperatorQueries().partners(
                        try options.openLedger(), first: days.first, last: days.last, scope: output.partner))
            }
        }

        struct Exposure: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Offline exposure per store: redemptions beyond held rights, and members now in debt.")
            @OptionGroup var options: DataOption
            @OptionGroup var output: Output

            func run() throws {
                output.print(try OperatorQueries().exposure(try options.openLedger(), scope: output.partner))
            }
        }

        struct Liability: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Points each partner issued that are not yet spent or expired.")
            @OptionGroup var options: DataOption
            @OptionGroup var output: Output

            func run() throws {
                output.print(try OperatorQueries().liability(try options.openLedger(), scope: output.partner))
            }
        }

        struct Clearing: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract:
                    "Points earned at one partner and spent at another in a period, netted per pair (FIFO), and each partner's liability."
            )
            @OptionGroup var options: DataOption
            @OptionGroup var period: Period
            @OptionGroup var output: Output

            func run() throws {
                let days = period.days
                output.print(
                    try OperatorQueries().clearing(
                        try options.openLedger(), first: days.first, last: days.last, scope: output.partner))
            }
        }
    }

    struct Token: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "API tokens for the operator console: operator (everything) or one partner (its own view).",
            subcommands: [Create.self, List.self, Revoke.self])

        struct Create: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Create a token and print it once; only its hash is stored.")
            @OptionGroup var options: DataOption
            @Option(help: "A unique label (who holds the token).") var label: String
            @Option(help: "Limit the token to this partner; without it the token is the operator's.")
            var partner: String?

            func run() throws {
                print(
                    try HubLedger().createToken(
                        try options.openLedger(), label: label,
                        role: partner.map { .partner($0) } ?? .coalitionOperator))
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List tokens (labels and roles) as JSON lines.")
            @OptionGroup var options: DataOption

            func run() throws {
                for token in try HubLedger().tokens(try options.openLedger()) {
                    print(
                        JSONValue.object([
                            "label": .string(token.label), "role": .string(token.role.description),
                            "createdAt": .int(Int64(clamping: token.createdMilliseconds)),
                            "revoked": .bool(token.revoked),
                        ]).jsonLine)
                }
            }
        }

        struct Revoke: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Revoke a token; it is refused from now on.")
            @OptionGroup var options: DataOption
            @Option(help: "The token's label.") var label: String

            func run() throws {
                try HubLedger().revokeToken(try options.openLedger(), label: label)
                print("revoked token \(label)")
            }
        }
    }

    struct Expire: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Expire points earned before a day and not spent since (oldest first), as hub entries.",
            discussion:
                "Only points whose rights the hub holds expire now; points whose rights a store still holds are reported as waiting and expire on a later run, after the store's next sync."
        )
        @OptionGroup var options: DataOption
        @Option(name: .customLong("earned-before"), help: "Expire points earned before this day, YYYY-MM-DD.")
        var earnedBefore: String

        func run() throws {
            guard let day = Campaign.day(parsing: earnedBefore) else {
                throw ValidationError("--earned-before must be YYYY-MM-DD")
            }
            let db = try options.openLedger()
            let offset = Int64(try HubLedger().timeZoneOffsetMinutes(db)) * 60_000
            let cutoff = UInt64(max(0, day * 86_400_000 - offset))
            let rows = try db.transaction { try HubLedger().expire(db, cutoff: cutoff, cutoffDay: day) }
            for row in rows {
                print(
                    JSONValue.object([
                        "member": .string(row.member.description), "expired": .int(Int64(row.expired)),
                        "waitingForStores": .int(Int64(row.waiting)),
                    ]).jsonLine)
            }
        }
    }

    struct Member: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a member's merged balances, tier and history at the hub, by card or phone, as JSON.")
        @OptionGroup var options: DataOption
        @Option(help: "The member's card number.")
        var card: String?
        @Option(help: "The member's phone number, E.164 (+4915112345678).")
        var phone: String?
        @Option(help: "The hub's key file; needed to find phones registered before the first rules.")
        var key: String?

        func run() throws {
            guard card != nil || phone != nil else { throw ValidationError("give --card or --phone") }
            let hubKey = try key.map { try KeyFile.load(from: $0).publicKey }
            guard
                let member = try OperatorQueries(hubKey: hubKey).member(
                    try options.openLedger(), card: card, phone: phone, scope: nil, now: wallClockMilliseconds())
            else {
                FileHandle.standardError.write(Data("no such member has reached the hub\n".utf8))
                throw ExitCode(2)
            }
            print(member.jsonLine)
        }
    }
}

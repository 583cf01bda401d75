import ArgumentParser
import CMimalloc
import Foundation
import Harness
import NodeKit
import Simulator

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the loyalty network under test: the narrated demo, and the tools the harness uses.",
        subcommands: [Run.self, Replay.self, Chaos.self, Demo.self, Relay.self])
}

/// The simulator's memory is a gigabyte or more of small SQLite pages and statements,
/// touched at random as events move from store to store. Two things about the allocator
/// count there (docs/simulation.md, "Large worlds"). mimalloc, linked in (CMimalloc),
/// replaces the C library's malloc for the whole process, SQLite's allocations included:
/// its size-class pages keep like-sized blocks together and its free lists are cheaper than
/// glibc's. And with 4 KiB pages the processor spends much of its time walking page tables,
/// so `run` and `replay` have mimalloc take its memory in 2 MiB pages (transparent huge
/// pages when no huge pages are reserved). Nothing the simulation computes depends on it:
/// the traces are the same.
enum Allocator {
    static func useLargePages() {
        mi_option_enable(mi_option_large_os_pages)
    }
}

/// Keeps the demo's cluster reachable from the signal handler.
private final class ActiveCluster: @unchecked Sendable {
    // @unchecked: set once before the signal sources start, then only read.
    var cluster: LocalCluster?
}

extension Simulate {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a hub and two stores on loopback and play the offline-sync scenario, narrated.")

        @Option(
            help: "Directory for databases, keys and logs (default: a new temporary directory, removed afterwards).")
        var workdir: String?
        @Option(
            help:
                "Keep the hub and stores running this many seconds after the scenario, to look at the hub's operator console."
        )
        var linger: UInt32 = 0

        func run() throws {
            let temporary = workdir == nil
            let directory =
                workdir.map { URL(fileURLWithPath: $0) }
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("loyalty-demo-\(getpid())")
            let cluster = try LocalCluster(binaries: LocalCluster.locateBinaries(), workDirectory: directory)
            let active = ActiveCluster()
            active.cluster = cluster
            var sources: [any DispatchSourceSignal] = []
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    print("\ninterrupted: stopping hub and stores")
                    active.cluster?.stop()
                    if temporary { try? FileManager.default.removeItem(at: directory) }
                    Glibc.exit(130)
                }
                source.resume()
                sources.append(source)
            }
            defer {
                cluster.stop()
                if temporary { try? FileManager.default.removeItem(at: directory) }
            }
            do {
                _ = try Walkthrough.run(cluster) { line in print(line) }
                if linger > 0 {
                    let token = try cluster.runTool(
                        "hub", ["token", "create"] + cluster.hubDataArguments + ["--label", "demo-operator"])
                    print("\n== the hub's operator console, for \(linger) s (Ctrl-C stops earlier):")
                    print("   http://127.0.0.1:\(cluster.consolePort)/#token=\(token)")
                    sleep(linger)
                }
                print("\ndemo finished: all processes stopped")
            } catch {
                print("\ndemo FAILED: \(error)")
                throw ExitCode.failure
            }
            _ = sources
        }
    }

    struct Relay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forward TCP from one address to another; SIGUSR1 cuts the link, SIGUSR2 restores it.",
            discussion:
                "With --faults FILE, SIGHUP reads the file again: `latency=MS bandwidth=BYTES_PER_S drop=up|down|none` (any subset) degrades the link, `reset` drops its connections once."
        )

        @Option(help: "Address to listen on, HOST:PORT.")
        var listen: String
        @Option(help: "Address to forward to, HOST:PORT.")
        var to: String
        @Option(help: "A file of link faults, read again on SIGHUP.")
        var faults: String?

        func run() throws {
            guard let listenAddress = SocketAddress(listen), let target = SocketAddress(to) else {
                throw ValidationError("addresses must be HOST:PORT")
            }
            prepareProcessSignals()
            let loop = try EventLoop()
            let relay = try TCPRelay(loop: loop, listen: listenAddress, target: target)
            var watchers: [SignalWatcher] = []
            var parentWatch: LoopTimer?
            watchers.append(try SignalWatcher(loop: loop, signal: SIGUSR1) { relay.cut() })
            watchers.append(try SignalWatcher(loop: loop, signal: SIGUSR2) { relay.restore() })
            if let faults {
                watchers.append(
                    try SignalWatcher(loop: loop, signal: SIGHUP) {
                        let text = ((try? String(contentsOfFile: faults, encoding: .utf8)) ?? "")
                            .trimmingCharacters(in: .whitespacesAndNewlines)
                        if text == "reset" {
                            relay.reset()
                        } else if let parsed = LinkFaults(parsing: text) {
                            relay.faults = parsed
                        } else {
                            FileHandle.standardError.write(Data("relay: ignoring faults file: \(text)\n".utf8))
                        }
                    })
            }
            for sig in [SIGINT, SIGTERM] {
                watchers.append(
                    try SignalWatcher(loop: loop, signal: sig) {
                        relay.close()
                        for watcher in watchers { watcher.close() }
                        loop.stop()
                    })
            }
            if shouldWatchParent {
                parentWatch = try watchParent(loop: loop) {
                    relay.close()
                    for watcher in watchers { watcher.close() }
                    loop.stop()
                }
            }
            loop.run()
            _ = parentWatch
            loop.shutdown()
        }
    }
}

/// The options a simulated world is made of.
struct WorldOptions: ParsableArguments {
    @Option(help: "The seed: the whole run (workload, faults, clocks) follows from it.")
    var seed: UInt64?
    @Option(help: "Stores in the chain.") var stores: Int = 6
    @Option(help: "Members registered before the day starts (more register during it).") var members: Int = 300
    @Option(help: "Simulated days of trading.") var days: Double = 1
    @Option(help: "Shoppers per store per day at the busiest rhythm.") var visits: Double = 400
    @Option(
        name: .customLong("activity-offset"),
        help: "Shopper activity: rank r shops in proportion to 1/(r+1+q), q this share of the members (0: plain Zipf).")
    var activityOffset: Double = 0.04
    @Option(
        name: .customLong("placement-days"),
        help: "Rights placement: stores keep the rights of members who last shopped there within N days (0: off).")
    var placementDays: UInt64 = 0
    @Flag(
        name: .customLong("partner-groups"),
        help: "Partner-group feeds: each store holds its group's members and looks others up at the hub.")
    var partnerGroups = false
    @Option(help: "Partners in the coalition (store i belongs to partner i modulo this).") var partners: Int = 3
    @Option(
        name: .customLong("sync-interval-ms"), help: "How often each store pulls the hub's feed (pushes go at once).")
    var syncInterval: UInt64 = 5_000
    @Flag(
        name: .customLong("preload-members"),
        help: "Load the members registered before the day as the starting state instead of registering them first.")
    var preloadMembers = false

    func validate() throws {
        guard (1...2_000).contains(stores) else { throw ValidationError("--stores must be 1 to 2,000") }
        guard (0...10_000_000).contains(members) else { throw ValidationError("--members must be 0 to 10,000,000") }
        guard days > 0, days <= 30 else { throw ValidationError("--days must be above 0 and at most 30") }
        guard activityOffset >= 0, activityOffset <= 100 else {
            throw ValidationError("--activity-offset must be 0 to 100")
        }
        guard (1...100_000).contains(partners) else { throw ValidationError("--partners must be 1 to 100,000") }
        guard (100...3_600_000).contains(syncInterval) else {
            throw ValidationError("--sync-interval-ms must be 100 to 3,600,000")
        }
    }

    func config(seed: UInt64) -> SimulationConfig {
        var config = SimulationConfig(seed: seed, stores: stores, members: members, days: days)
        config.visitsPerStorePerDay = visits
        config.activityOffset = activityOffset
        config.placementDays = placementDays
        config.partnerGroups = partnerGroups
        config.partners = partners
        config.syncIntervalMilliseconds = syncInterval
        config.preloadMembers = preloadMembers
        return config
    }

    var replayCommand: String {
        "--stores \(stores) --members \(members) --days \(days) --visits \(visits)"
            + " --activity-offset \(activityOffset)"
            + (placementDays > 0 ? " --placement-days \(placementDays)" : "")
            + (partnerGroups ? " --partner-groups" : "")
            + " --partners \(partners) --sync-interval-ms \(syncInterval)"
            + (preloadMembers ? " --preload-members" : "")
    }
}

extension Simulate {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Simulate a chain's day deterministically: real session machines and ledgers, a simulated network with loss, duplication, reordering, partitions, crashes and clock skew; then heal and check that every replica converged and nothing was lost.",
            discussion:
                "A violation prints the seed, the invariant and the last events; `simulate replay` with the same options reproduces it bit for bit."
        )
        @OptionGroup var world: WorldOptions
        @Option(help: "Run this many seeds, from --seed on.") var sweep: Int = 1
        @Option(help: "Write the summaries as JSON to this file.") var json: String?
        @Option(help: "Write a self-contained HTML report (SVG charts) to this file.") var report: String?

        func run() throws {
            Allocator.useLargePages()
            let first = world.seed ?? UInt64(Date().timeIntervalSince1970 * 1000) % 1_000_000_007
            var summaries: [SimulationSummary] = []
            let seeds = first..<(first + UInt64(max(1, sweep)))
            for seed in seeds {
                let started = Date()
                do {
                    let simulation = try Simulation(world.config(seed: seed))
                    let bar = ProgressBar(label: seeds.count > 1 ? "seed \(seed)" : "")
                    if let bar { simulation.onProgress = { bar.show($0) } }
                    let summary = try simulation.run()
                    bar?.clear()
                    summaries.append(summary)
                    print(line(summary, wall: Date().timeIntervalSince(started)))
                } catch let violation as Violation {
                    print("\nFAILED \(violation)")
                    print("\nreproduce: simulate replay --seed \(seed) \(world.replayCommand)")
                    throw ExitCode.failure
                }
            }
            if let json {
                try JSONValue.array(summaries.map(\.json)).jsonLine.write(
                    toFile: json, atomically: true, encoding: .utf8)
            }
            if let report {
                try SimulationReport.html(summaries).write(toFile: report, atomically: true, encoding: .utf8)
                print("report: \(report)")
            }
        }
    }

    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one seed again and print every event: the same options give the same trace, bit for bit.")
        @OptionGroup var world: WorldOptions

        func run() throws {
            Allocator.useLargePages()
            guard let seed = world.seed else { throw ValidationError("--seed is required") }
            var config = world.config(seed: seed)
            config.recordTrace = true
            let simulation = try Simulation(config)
            do {
                let summary = try simulation.run()
                for event in simulation.fullTrace { print(event) }
                print(line(summary, wall: 0))
            } catch let violation as Violation {
                for event in simulation.fullTrace { print(event) }
                print("\nFAILED \(violation.check): \(violation.detail)")
                throw ExitCode.failure
            }
        }
    }
}

/// A one-line progress bar with the phase and its ETA, on standard error when that is a
/// terminal (nil otherwise: logs and pipes get only the result lines).
final class ProgressBar {
    private let label: String
    private var phase: Simulation.Progress.Phase?
    private var phaseStarted = Date()
    private var lastDrawn = Date.distantPast

    init?(label: String) {
        guard isatty(STDERR_FILENO) == 1 else { return nil }
        self.label = label
    }

    func show(_ progress: Simulation.Progress) {
        let now = Date()
        if progress.phase != phase {
            phase = progress.phase
            phaseStarted = now
        } else if now.timeIntervalSince(lastDrawn) < 0.2 && progress.fraction < 1 {
            return
        }
        lastDrawn = now
        let width = 30
        let filled = Int(progress.fraction * Double(width))
        let elapsed = now.timeIntervalSince(phaseStarted)
        let eta =
            progress.fraction > 0.01 && progress.fraction < 1
            ? String(format: ", ETA %.0f s", elapsed * (1 - progress.fraction) / progress.fraction) : ""
        let text =
            "\r\u{1B}[K\(label.isEmpty ? "" : label + " ")[" + String(repeating: "#", count: filled)
            + String(repeating: ".", count: width - filled) + "] "
            + String(
                format: "%3.0f%% %@, %d events%@", progress.fraction * 100, progress.phase.rawValue, progress.events,
                eta)
        FileHandle.standardError.write(Data(text.utf8))
    }

    func clear() { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
}

func line(_ summary: SimulationSummary, wall: Double) -> String {
    "seed \(summary.seed): ok, trace \(String(summary.traceHash, radix: 16)), \(summary.events) events"
        + String(format: " in %.1f s", wall)
        + "; \(summary.purchasesAcknowledged) purchases, \(summary.purchasesRefused) refused, \(summary.refundsAcknowledged) refunds,"
        + " \(summary.registrations) registrations, \(summary.retriesReplayed) retries replayed,"
        + " promo codes \(summary.promosCredited) credited / \(summary.promosRefused) refused;"
        + " \(summary.duplicateRegistrations) second registrations, \(summary.memberMerges) merged;"
        + " members looked up at the hub \(summary.lookupsFound)/\(summary.lookups) found;"
        + " offline redemptions \(summary.offlineRedemptionsServed)/\(summary.offlineRedemptionsRequested) served,"
        + " online \(summary.onlineRedemptionsServed)/\(summary.onlineRedemptionsRequested);"
        + " \(summary.partitions) partitions, \(summary.crashes) crashes, \(summary.messagesLost)/\(summary.messagesSent) messages lost;"
        + " converged \(summary.convergenceMilliseconds) ms after the final heal"
        + (summary.healConvergence.isEmpty
            ? "" : ", after partition heals in \(summary.healConvergence.min()!)–\(summary.healConvergence.max()!) ms")
        + "\n  faults: \(summary.faults)"
}

extension SimulationSummary {
    var json: JSONValue {
        .object([
            "seed": .int(Int64(bitPattern: seed)), "faults": .string(faults),
            "trace": .string(String(traceHash, radix: 16)), "events": .int(Int64(events)),
            "simulatedMs": .int(Int64(simulatedMilliseconds)),
            "purchases": .int(Int64(purchasesAcknowledged)), "refused": .int(Int64(purchasesRefused)),
            "refunds": .int(Int64(refundsAcknowledged)), "registrations": .int(Int64(registrations)),
            "offlineRedemptionsRequested": .int(Int64(offlineRedemptionsRequested)),
            "offlineRedemptionsServed": .int(Int64(offlineRedemptionsServed)),
            "onlineRedemptionsRequested": .int(Int64(onlineRedemptionsRequested)),
            "onlineRedemptionsServed": .int(Int64(onlineRedemptionsServed)),
            "partitions": .int(Int64(partitions)), "crashes": .int(Int64(crashes)),
            "messagesSent": .int(Int64(messagesSent)), "messagesLost": .int(Int64(messagesLost)),
            "convergenceMs": .int(Int64(convergenceMilliseconds)), "hubEntries": .int(Int64(hubEntries)),
            "promosCredited": .int(Int64(promosCredited)), "promosRefused": .int(Int64(promosRefused)),
            "duplicateRegistrations": .int(Int64(duplicateRegistrations)), "memberMerges": .int(Int64(memberMerges)),
            "lookups": .int(Int64(lookups)), "lookupsFound": .int(Int64(lookupsFound)),
            "healConvergenceMs": .array(healConvergence.map { .int(Int64($0)) }),
        ])
    }
}

extension Simulate {
    struct Chaos: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Real processes under faults: a hub and stores on loopback behind fault proxies, POS load, kill -9 and restarts; then heal and check the invariants from the nodes' databases."
        )
        @Option(help: "Seed for the choice of faults and purchases (process timing still varies).") var seed: UInt64 = 1
        @Option(help: "Stores.") var stores: Int = 3
        @Option(help: "Seconds of load under faults.") var seconds: Double = 20
        @Option(help: "Directory for databases, keys and logs (default: a temporary one, removed afterwards).")
        var workdir: String?

        func validate() throws {
            guard (1...20).contains(stores) else { throw ValidationError("--stores must be 1 to 20") }
            guard seconds > 0, seconds <= 600 else {
                throw ValidationError("--seconds must be above 0 and at most 600")
            }
        }

        func run() throws {
            let directory =
                workdir.map { URL(fileURLWithPath: $0) }
                ?? FileManager.default.temporaryDirectory.appendingPathComponent("loyalty-chaos-\(getpid())")
            let cluster = try LocalCluster(binaries: LocalCluster.locateBinaries(), workDirectory: directory)
            defer {
                cluster.stop()
                if workdir == nil { try? FileManager.default.removeItem(at: directory) }
            }
            do {
                _ = try Harness.Chaos.run(
                    cluster, Harness.Chaos.Options(seed: seed, stores: stores, seconds: seconds)
                ) { print($0) }
            } catch {
                print("\nchaos FAILED: \(error)\nlogs: \(directory.path)")
                cluster.dumpLogs()
                throw ExitCode.failure
            }
        }
    }
}

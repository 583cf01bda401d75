import ArgumentParser
import Foundation
import Harness
import NodeKit

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Simulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Run the loyalty network under test: the narrated demo, and the tools the harness uses.",
        subcommands: [Demo.self, Relay.self])
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
                        "hub", ["token", "create", "--data", cluster.hubDataPath, "--label", "demo-operator"])
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
            abstract: "Forward TCP from one address to another; SIGUSR1 cuts the link, SIGUSR2 restores it.")

        @Option(help: "Address to listen on, HOST:PORT.")
        var listen: String
        @Option(help: "Address to forward to, HOST:PORT.")
        var to: String

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

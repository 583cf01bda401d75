import Foundation

/// Copies a WAL database's committed pages back into the database file on a connection and a
/// thread of its own. A checkpoint writes pages at random places and fsyncs the database
/// file; on the writer it would stall every POS operation waiting for the next commit, so the
/// writer only asks for one (`request`) and goes on committing while it runs. WAL mode lets
/// a checkpoint and a write transaction run at once.
final class Checkpointer: Sendable {
    private final class Shared: @unchecked Sendable {
        // @unchecked: fields are read and written only while `condition` is locked.
        let condition = NSCondition()
        var requested = false
        var stopping = false
        var checkpoints: UInt64 = 0
        var nanoseconds: UInt64 = 0
        var walFrames: Int64 = 0
    }

    private let shared = Shared()
    private let done = DispatchSemaphore(value: 0)
    /// Passes one request may run (see `run`).
    static let passes = 4

    /// Opens its own connection to the database at `path`; nil for an in-memory database,
    /// which has no WAL.
    init?(path: String) {
        // synchronous=FULL here too: the checkpoint fsyncs the WAL before copying it and the
        // database file after, so the WAL can start over only once the copy is durable.
        guard !SQLiteConnection.isInMemory(path), let connection = try? SQLiteConnection(path: path),
            (try? connection.configureDurable()) != nil
        else { return nil }
        let shared = self.shared
        let done = self.done
        let thread = Thread {
            Checkpointer.run(connection, shared)
            connection.close()
            done.signal()
        }
        thread.name = "db-checkpoint"
        thread.start()
    }

    /// Asks for a checkpoint soon; returns at once. Requests made while one runs are folded
    /// into the next.
    func request() {
        shared.condition.lock()
        shared.requested = true
        shared.condition.signal()
        shared.condition.unlock()
    }

    /// Checkpoints run, the time they took, and the WAL's length in frames at the last one.
    var statistics: (checkpoints: UInt64, nanoseconds: UInt64, walFrames: Int64) {
        shared.condition.lock()
        defer { shared.condition.unlock() }
        return (shared.checkpoints, shared.nanoseconds, shared.walFrames)
    }

    /// Finishes a checkpoint in progress and ends the thread.
    func stop() {
        shared.condition.lock()
        guard !shared.stopping else {
            shared.condition.unlock()
            return
        }
        shared.stopping = true
        shared.condition.signal()
        shared.condition.unlock()
        done.wait()
    }

    private static func run(_ db: SQLiteConnection, _ shared: Shared) {
        while true {
            shared.condition.lock()
            while !shared.requested && !shared.stopping { shared.condition.wait() }
            // A request made before the writer stopped is still carried out.
            if !shared.requested {
                shared.condition.unlock()
                return
            }
            shared.requested = false
            shared.condition.unlock()
            let started = monotonicNanoseconds()
            // PASSIVE never waits for the writer. What was committed meanwhile is copied by
            // up to `passes` more passes, each shorter than the last while the writer commits
            // less than a pass copies: once every frame is copied, the writer's next commit
            // starts the WAL over, and the writer's own copy (DatabaseWriter) finds little
            // left. A failure (the disk full, say) leaves the pages in the WAL, where they
            // are as durable, and the writer's own checkpoint tries again.
            var result: SQLRow?
            for _ in 0..<Self.passes {
                guard let pass = try? db.query("PRAGMA wal_checkpoint(PASSIVE)").first, pass.values.count == 3 else {
                    break
                }
                let copiedBefore = result?.int(2) ?? -1
                result = pass
                // Done when every frame is copied, when the writer holds the WAL (busy), or
                // when a pass copied nothing new.
                if pass.int(0) != 0 || pass.int(1) == pass.int(2) || pass.int(2) == copiedBefore { break }
            }
            let elapsed = monotonicNanoseconds() - started
            shared.condition.lock()
            shared.checkpoints += 1
            shared.nanoseconds += elapsed
            if let result { shared.walFrames = result.int(1) }
            shared.condition.unlock()
        }
    }
}

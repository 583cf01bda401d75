import Foundation

/// Runs database work on a thread of its own and reports back on the loop through
/// `uv_async`, so the loop never blocks on disk. Work submitted while a transaction runs is
/// gathered into the next one: group commit, one fsync for many operations. (Letting work
/// join the running transaction was measured: with 8 closed-loop lanes it puts every lane in
/// one transaction and leaves the writer idle while the answers travel, so it is not done.
/// So was committing without the sync and syncing the WAL on a thread of its own, to overlap
/// the next batch's SQL with the fsync: on this machine's disk an fdatasync that runs while
/// another thread writes to the same file takes about twice as long, p50 570 µs against
/// 190-300 µs alone, so the answers came no sooner.)
/// Each job runs in its own SAVEPOINT, so a failing job rolls back alone.
public final class DatabaseWriter {
    public typealias Work = @Sendable (any SQLDatabase) throws -> any Sendable
    private typealias Outcome = Result<any Sendable, any Error>

    /// State shared by the loop thread and the writer thread, always under `condition`.
    private final class Shared: @unchecked Sendable {
        // @unchecked: every field is read and written only while `condition` is locked.
        let condition = NSCondition()
        var pending: [(id: UInt64, work: Work)] = []
        var finished: [(id: UInt64, outcome: Outcome)] = []
        var stopping = false
        var transactions: UInt64 = 0
        var jobs: UInt64 = 0
        var busyNanoseconds: UInt64 = 0
        var commitNanoseconds: UInt64 = 0
    }

    private let shared = Shared()
    private var waker: LoopWaker!
    private var completions: [UInt64: (Outcome) -> Void] = [:]
    private var nextID: UInt64 = 1
    private let done = DispatchSemaphore(value: 0)
    private var running = true
    private let checkpointer: Checkpointer?
    public let maxBatch: Int

    /// Takes over `connection` (already configured and migrated by the caller) and starts
    /// the writer thread.
    public init(loop: EventLoop, connection: any SQLDatabase, maxBatch: Int = 256) throws(UVError) {
        self.maxBatch = maxBatch
        let checkpointer = (connection as? SQLiteConnection).flatMap { Checkpointer(path: $0.path) }
        self.checkpointer = checkpointer
        waker = try LoopWaker(loop: loop) { [unowned self] in self.drain() }
        let shared = self.shared
        let signal = waker.signal
        let done = self.done
        let thread = Thread {
            DatabaseWriter.writerLoop(
                connection: connection, checkpointer: checkpointer, shared: shared, signal: signal, maxBatch: maxBatch)
            done.signal()
        }
        thread.name = "db-writer"
        thread.start()
    }

    /// Queues `work`; `completion` runs on the loop thread after its transaction committed
    /// (or failed). Jobs submitted together commit together.
    public func submit<T: Sendable>(
        _ work: @escaping @Sendable (any SQLDatabase) throws -> T, completion: @escaping (Result<T, any Error>) -> Void
    ) {
        guard running else {
            completion(.failure(WriterStopped()))
            return
        }
        let id = nextID
        nextID += 1
        completions[id] = { outcome in
            switch outcome {
            case .success(let value): completion(.success(value as! T))
            case .failure(let error): completion(.failure(error))
            }
        }
        shared.condition.lock()
        shared.pending.append((id, { db in try work(db) }))
        shared.condition.signal()
        shared.condition.unlock()
    }

    /// Jobs submitted and not yet completed.
    public var inFlight: Int { completions.count }

    /// Transactions committed and jobs run so far (group-commit ratio), and the writer
    /// thread's busy time, of which COMMIT (the fsync) took `commitNanoseconds`.
    public var statistics: (transactions: UInt64, jobs: UInt64, busyNanoseconds: UInt64, commitNanoseconds: UInt64) {
        shared.condition.lock()
        defer { shared.condition.unlock() }
        return (shared.transactions, shared.jobs, shared.busyNanoseconds, shared.commitNanoseconds)
    }

    /// Checkpoints run on the checkpoint thread, the time they took and the WAL's length in
    /// frames at the last one (zeros without one: an in-memory or PostgreSQL database).
    public var checkpointStatistics: (checkpoints: UInt64, nanoseconds: UInt64, walFrames: Int64) {
        checkpointer?.statistics ?? (0, 0, 0)
    }

    private func drain() {
        shared.condition.lock()
        let finished = shared.finished
        shared.finished.removeAll()
        shared.condition.unlock()
        for (id, outcome) in finished {
            completions.removeValue(forKey: id)?(outcome)
        }
    }

    /// Finishes queued work, stops the thread and closes the waker.
    public func close() {
        guard running else { return }
        running = false
        shared.condition.lock()
        shared.stopping = true
        shared.condition.signal()
        shared.condition.unlock()
        done.wait()
        checkpointer?.stop()
        drain()
        waker.close()
    }

    public struct WriterStopped: Error, CustomStringConvertible {
        public var description: String { "the database writer has stopped" }
    }

    private static func writerLoop(
        connection db: any SQLDatabase, checkpointer: Checkpointer?, shared: Shared, signal: LoopWaker.Signal,
        maxBatch: Int
    ) {
        // Checkpoints copy the WAL into the database and fsync it; left to SQLite they run
        // inside a POS operation's COMMIT. One is due every `checkpointEvery` transactions,
        // or when the writer goes idle after at least `idleCheckpointAfter`, and the
        // checkpoint thread runs it. (Asking more often was measured: a page rewritten by many
        // transactions is copied many times, and the extra database fsyncs lengthen the
        // WAL's.) The WAL starts over from its beginning only once every frame is copied; the
        // checkpoint thread gets there by running a few passes, each copying what was
        // committed during the last, unless the writer commits faster than a pass copies.
        // Then the WAL grows, and once it holds `restartFrames` frames the writer copies the
        // last few itself (every `restartEvery` transactions at most): a stall of a few
        // milliseconds to tens of milliseconds, so not done while the thread keeps up.
        // Without a checkpoint thread (an in-memory database) the writer runs each due
        // checkpoint itself.
        let sqlite = db.dialect == .sqlite
        if sqlite { try? db.execute("PRAGMA wal_autocheckpoint = 0") }
        let checkpointEvery = 1_000
        let idleCheckpointAfter = 200
        let restartEvery = 2_048
        let restartFrames: Int64 = 16_384
        func checkpointHere() { _ = try? db.query("PRAGMA wal_checkpoint(PASSIVE)") }
        func checkpointDue() { if let checkpointer { checkpointer.request() } else { checkpointHere() } }
        var sinceCheckpoint = 0
        var sinceRestart = 0
        while true {
            shared.condition.lock()
            if sqlite && shared.pending.isEmpty && !shared.stopping && sinceCheckpoint >= idleCheckpointAfter {
                shared.condition.unlock()
                checkpointDue()
                sinceCheckpoint = 0
                shared.condition.lock()
            }
            while shared.pending.isEmpty && !shared.stopping { shared.condition.wait() }
            if shared.pending.isEmpty {
                shared.condition.unlock()
                return
            }
            let batch = Array(shared.pending.prefix(maxBatch))
            shared.pending.removeFirst(batch.count)
            shared.condition.unlock()

            if let checkpointer, sqlite && sinceRestart >= restartEvery {
                sinceRestart = 0
                if checkpointer.statistics.walFrames >= restartFrames {
                    checkpointHere()
                    sinceCheckpoint = 0
                }
            }
            if sqlite && sinceCheckpoint >= checkpointEvery {
                checkpointDue()
                sinceCheckpoint = 0
            }
            sinceCheckpoint += 1
            sinceRestart += 1
            let started = monotonicNanoseconds()
            var commitStarted = started
            var outcomes: [(id: UInt64, outcome: Outcome)] = []
            outcomes.reserveCapacity(batch.count)
            do {
                // Prepared once and reused: these run for every job on the hot path.
                try db.beginWrite()
                for job in batch {
                    try db.run("SAVEPOINT job")
                    do {
                        let value = try job.work(db)
                        try db.run("RELEASE job")
                        outcomes.append((job.id, .success(value)))
                    } catch {
                        try db.run("ROLLBACK TO job")
                        try db.run("RELEASE job")
                        outcomes.append((job.id, .failure(error)))
                    }
                }
                commitStarted = monotonicNanoseconds()
                try db.run("COMMIT")
            } catch {
                try? db.execute("ROLLBACK")
                outcomes = batch.map { ($0.id, .failure(error)) }
            }
            shared.condition.lock()
            shared.finished += outcomes
            let finished = monotonicNanoseconds()
            shared.transactions += 1
            shared.jobs += UInt64(batch.count)
            shared.busyNanoseconds += finished - started
            shared.commitNanoseconds += finished - max(commitStarted, started)
            shared.condition.unlock()
            signal.wake()
        }
    }
}

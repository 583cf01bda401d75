import Foundation

/// Runs database work on a thread of its own and reports back on the loop through
/// `uv_async`, so the loop never blocks on disk. Work submitted while a transaction is being
/// committed is gathered into the next one: group commit, one fsync for many operations.
/// Each job runs in its own SAVEPOINT, so a failing job rolls back alone.
public final class DatabaseWriter {
    public typealias Work = @Sendable (SQLiteConnection) throws -> any Sendable
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
    }

    private let shared = Shared()
    private var waker: LoopWaker!
    private var completions: [UInt64: (Outcome) -> Void] = [:]
    private var nextID: UInt64 = 1
    private let done = DispatchSemaphore(value: 0)
    private var running = true
    public let maxBatch: Int

    /// Takes over `connection` (already configured and migrated by the caller) and starts
    /// the writer thread.
    public init(loop: EventLoop, connection: SQLiteConnection, maxBatch: Int = 256) throws(UVError) {
        self.maxBatch = maxBatch
        waker = try LoopWaker(loop: loop) { [unowned self] in self.drain() }
        let shared = self.shared
        let signal = waker.signal
        let done = self.done
        let thread = Thread {
            DatabaseWriter.writerLoop(connection: connection, shared: shared, signal: signal, maxBatch: maxBatch)
            done.signal()
        }
        thread.name = "db-writer"
        thread.start()
    }

    /// Queues `work`; `completion` runs on the loop thread after its transaction committed
    /// (or failed). Jobs submitted together commit together.
    public func submit<T: Sendable>(
        _ work: @escaping @Sendable (SQLiteConnection) throws -> T, completion: @escaping (Result<T, any Error>) -> Void
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

    /// Transactions committed and jobs run so far (group-commit ratio).
    public var statistics: (transactions: UInt64, jobs: UInt64) {
        shared.condition.lock()
        defer { shared.condition.unlock() }
        return (shared.transactions, shared.jobs)
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
        drain()
        waker.close()
    }

    public struct WriterStopped: Error, CustomStringConvertible {
        public var description: String { "the database writer has stopped" }
    }

    private static func writerLoop(
        connection db: SQLiteConnection, shared: Shared, signal: LoopWaker.Signal, maxBatch: Int
    ) {
        while true {
            shared.condition.lock()
            while shared.pending.isEmpty && !shared.stopping { shared.condition.wait() }
            if shared.pending.isEmpty {
                shared.condition.unlock()
                return
            }
            let batch = Array(shared.pending.prefix(maxBatch))
            shared.pending.removeFirst(batch.count)
            shared.condition.unlock()

            var outcomes: [(id: UInt64, outcome: Outcome)] = []
            outcomes.reserveCapacity(batch.count)
            do {
                try db.execute("BEGIN IMMEDIATE")
                for job in batch {
                    try db.execute("SAVEPOINT job")
                    do {
                        let value = try job.work(db)
                        try db.execute("RELEASE job")
                        outcomes.append((job.id, .success(value)))
                    } catch {
                        try db.execute("ROLLBACK TO job; RELEASE job")
                        outcomes.append((job.id, .failure(error)))
                    }
                }
                try db.execute("COMMIT")
            } catch {
                try? db.execute("ROLLBACK")
                outcomes = batch.map { ($0.id, .failure(error)) }
            }
            shared.condition.lock()
            shared.finished += outcomes
            shared.transactions += 1
            shared.jobs += UInt64(batch.count)
            shared.condition.unlock()
            signal.wake()
        }
    }
}

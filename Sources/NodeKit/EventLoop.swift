import CLibUV

/// One libuv loop. Every handle made on it must be used on the thread that runs it;
/// `LoopWaker.Signal` is the one thing other threads may touch.
public final class EventLoop {
    let raw: UnsafeMutablePointer<uv_loop_t>

    public init() throws(UVError) {
        raw = .allocate(capacity: 1)
        let rc = uv_loop_init(raw)
        if rc < 0 {
            raw.deallocate()
            throw UVError(code: rc, call: "uv_loop_init")
        }
    }

    /// Runs until `stop()` or until no active handle is left.
    public func run() {
        uv_run(raw, UV_RUN_DEFAULT)
    }

    /// Runs one iteration without blocking; for tests that step the loop.
    @discardableResult
    public func runNoWait() -> Bool {
        uv_run(raw, UV_RUN_NOWAIT) != 0
    }

    public func stop() { uv_stop(raw) }

    /// The loop's cached monotonic clock in milliseconds.
    public var nowMilliseconds: UInt64 { uv_now(raw) }

    /// Closes every handle still open and runs the loop until their close callbacks ran.
    public func shutdown() {
        uv_walk(
            raw,
            { handle, _ in
                guard let handle, uv_is_closing(handle) == 0 else { return }
                if let data = handle.pointee.data {
                    Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue().close()
                } else {
                    uv_close(handle, nil)
                }
            }, nil)
        uv_run(raw, UV_RUN_DEFAULT)
    }

    deinit {
        if uv_loop_close(raw) == 0 { raw.deallocate() }
        // A loop with live handles is left allocated: freeing it would be a use-after-free.
    }
}

/// Base of every libuv handle wrapper: owns the handle's memory and keeps itself alive
/// (through `handle.data`) until libuv's close callback has run.
public class LoopHandle {
    let handle: UnsafeMutablePointer<uv_handle_t>
    private var closing = false
    public var onClose: (() -> Void)?

    init(type: uv_handle_type) {
        let size = uv_handle_size(type)
        handle = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16).bindMemory(
            to: uv_handle_t.self, capacity: 1)
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    public var isClosing: Bool { closing }

    /// Closes the handle; `onClose` runs once libuv has let go of it.
    public func close() {
        guard !closing else { return }
        closing = true
        willClose()
        uv_close(handle) { handle in
            guard let handle, let data = handle.pointee.data else { return }
            let object = Unmanaged<LoopHandle>.fromOpaque(data)
            let wrapper = object.takeUnretainedValue()
            handle.pointee.data = nil
            wrapper.onClose?()
            wrapper.onClose = nil
            wrapper.didClose()
            object.release()
        }
    }

    /// Frees the handle when it was never initialised with libuv (init failed).
    func abandon() {
        closing = true
        if let data = handle.pointee.data {
            handle.pointee.data = nil
            Unmanaged<LoopHandle>.fromOpaque(data).release()
        }
    }

    func willClose() {}
    func didClose() {}

    deinit {
        UnsafeMutableRawPointer(handle).deallocate()
    }

    static func from<T: LoopHandle>(_ pointer: UnsafeMutableRawPointer?, as: T.Type) -> T? {
        guard let pointer else { return nil }
        let handle = pointer.assumingMemoryBound(to: uv_handle_t.self)
        guard let data = handle.pointee.data else { return nil }
        return Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue() as? T
    }
}

/// A one-shot or repeating timer on the loop.
public final class LoopTimer: LoopHandle {
    private var callback: (() -> Void)?

    public init(loop: EventLoop) throws(UVError) {
        super.init(type: UV_TIMER)
        let rc = uv_timer_init(loop.raw, timer)
        if rc < 0 {
            abandon()
            throw UVError(code: rc, call: "uv_timer_init")
        }
    }

    private var timer: UnsafeMutablePointer<uv_timer_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_timer_t.self)
    }

    /// Fires after `milliseconds`, then every `repeatMilliseconds` if that is not zero.
    public func start(after milliseconds: UInt64, repeat repeatMilliseconds: UInt64 = 0, _ body: @escaping () -> Void) {
        guard !isClosing else { return }
        callback = body
        let rc = uv_timer_start(
            timer,
            { timer in
                LoopHandle.from(timer.map(UnsafeMutableRawPointer.init), as: LoopTimer.self)?.callback?()
            }, milliseconds, repeatMilliseconds)
        precondition(rc == 0, "uv_timer_start on an initialised timer cannot fail")
    }

    public func stop() {
        guard !isClosing else { return }
        uv_timer_stop(timer)
    }

    override func didClose() { callback = nil }
}

/// Wakes the loop from another thread (`uv_async`); several wakes may coalesce into one call.
public final class LoopWaker: LoopHandle {
    private var callback: (() -> Void)?

    /// The thread-safe half: the only libuv call allowed off the loop thread.
    public struct Signal: @unchecked Sendable {
        // uv_async_send is documented as safe from any thread; the pointer stays valid
        // until the waker is closed, which owners do only after their threads stopped.
        fileprivate let async: UnsafeMutablePointer<uv_async_t>
        public func wake() { uv_async_send(async) }
    }

    public init(loop: EventLoop, _ body: @escaping () -> Void) throws(UVError) {
        super.init(type: UV_ASYNC)
        callback = body
        let rc = uv_async_init(
            loop.raw, async,
            { async in
                LoopHandle.from(async.map(UnsafeMutableRawPointer.init), as: LoopWaker.self)?.callback?()
            })
        if rc < 0 {
            abandon()
            throw UVError(code: rc, call: "uv_async_init")
        }
    }

    private var async: UnsafeMutablePointer<uv_async_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_async_t.self)
    }

    public var signal: Signal { Signal(async: async) }

    override func didClose() { callback = nil }
}

/// Delivers a POSIX signal (SIGINT, SIGTERM) on the loop thread.
public final class SignalWatcher: LoopHandle {
    private var callback: (() -> Void)?

    public init(loop: EventLoop, signal: Int32, _ body: @escaping () -> Void) throws(UVError) {
        super.init(type: UV_SIGNAL)
        callback = body
        let sig = UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_signal_t.self)
        var rc = uv_signal_init(loop.raw, sig)
        if rc < 0 {
            abandon()
            throw UVError(code: rc, call: "uv_signal_init")
        }
        rc = uv_signal_start(
            sig,
            { sig, _ in
                LoopHandle.from(sig.map(UnsafeMutableRawPointer.init), as: SignalWatcher.self)?.callback?()
            }, signal)
        if rc < 0 {
            close()
            throw UVError(code: rc, call: "uv_signal_start")
        }
    }

    override func didClose() { callback = nil }
}

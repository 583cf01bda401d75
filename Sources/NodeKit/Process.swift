import CLibUV

#if canImport(Glibc)
    import Glibc
#endif

/// Makes a node process behave the same however it was started: signals a parent thread had
/// blocked (thread pools block them, and a spawned child inherits the mask) are unblocked,
/// so SIGTERM, SIGINT and the relay's SIGUSR1/SIGUSR2 always arrive.
public func prepareProcessSignals() {
    var empty = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, nil)
}

/// Whether LOYALTY_DIE_WITH_PARENT=1 is set: the harness asks its children to stop when it dies.
public var shouldWatchParent: Bool {
    guard let value = getenv("LOYALTY_DIE_WITH_PARENT") else { return false }
    return String(cString: value) == "1"
}

/// Calls `body` on the loop once the process that started us has gone (we were re-parented).
/// Polling `getppid` works whichever thread of the parent spawned us, unlike PR_SET_PDEATHSIG.
public func watchParent(loop: EventLoop, _ body: @escaping () -> Void) throws(UVError) -> LoopTimer {
    let original = getppid()
    let timer = try LoopTimer(loop: loop)
    timer.start(after: 250, repeat: 250) {
        if getppid() != original {
            timer.stop()
            body()
        }
    }
    return timer
}

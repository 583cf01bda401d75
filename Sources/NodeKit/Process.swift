import CLibUV

#if canImport(Glibc)
    import Glibc
#endif

/// When LOYALTY_DIE_WITH_PARENT=1 (set by the test harness), asks the kernel to send us
/// SIGTERM if the parent dies, so no node outlives a killed harness.
public func dieWithParent() {
    guard let value = getenv("LOYALTY_DIE_WITH_PARENT"), String(cString: value) == "1" else { return }
    _ = loyalty_set_parent_death_signal(SIGTERM)
}

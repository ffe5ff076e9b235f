#if canImport(Glibc)
import Glibc
#endif

/// A flag one thread raises and another waits for.
public final class Wakeup: @unchecked Sendable {
    // @unchecked: `raised` is only touched under `lock`.
    private let lock = ConditionLock()
    private var raised = false

    public init() {}

    /// Raises the flag and wakes a waiter.
    public func raise() {
        lock.lock()
        raised = true
        lock.signal()
        lock.unlock()
    }

    /// Waits until the flag is raised or `seconds` pass; lowers it and
    /// returns whether it was raised.
    public func wait(seconds: Int) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += seconds
        lock.lock()
        defer { lock.unlock() }
        while !raised, lock.wait(until: deadline) {}
        defer { raised = false }
        return raised
    }
}

/// Lets many operations run at once, and lets one caller stop new ones and
/// wait for the running ones to finish (a snapshot of a mounted filesystem).
/// A pause waiting to start holds back new operations, so a steady stream of
/// writes cannot starve it (unlike glibc's default reader-preferring rwlock).
public final class PauseGate: @unchecked Sendable {
    // @unchecked: `running` and `pausing` are only touched under `lock`.
    private let lock = ConditionLock()
    private var running = 0
    private var pausing = false

    public init() {}

    /// Runs one operation, after any pause in progress. Not reentrant.
    public func pass<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        while pausing { lock.wait() }
        running += 1
        lock.unlock()
        defer {
            lock.lock()
            running -= 1
            if running == 0 { lock.broadcast() }
            lock.unlock()
        }
        return try body()
    }

    /// Runs `body` while no operation runs (one pause at a time).
    public func paused<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        while pausing { lock.wait() }
        pausing = true
        while running > 0 { lock.wait() }
        lock.unlock()
        defer {
            lock.lock()
            pausing = false
            lock.broadcast()
            lock.unlock()
        }
        return try body()
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Lets many operations run at once, and lets one caller stop new ones and
/// wait for the running ones to finish (a snapshot of a mounted filesystem).
/// A pause waiting to start holds back new operations, so a steady stream of
/// writes cannot starve it (unlike glibc's default reader-preferring rwlock).
public final class PauseGate: @unchecked Sendable {
    // @unchecked: `running` and `pausing` are only touched under `mutex`.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let changed: UnsafeMutablePointer<pthread_cond_t>
    private var running = 0
    private var pausing = false

    public init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        changed = .allocate(capacity: 1)
        changed.initialize(to: pthread_cond_t())
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Runs one operation, after any pause in progress. Not reentrant.
    public func pass<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        while pausing { pthread_cond_wait(changed, mutex) }
        running += 1
        pthread_mutex_unlock(mutex)
        defer {
            pthread_mutex_lock(mutex)
            running -= 1
            if running == 0 { pthread_cond_broadcast(changed) }
            pthread_mutex_unlock(mutex)
        }
        return try body()
    }

    /// Runs `body` while no operation runs (one pause at a time).
    public func paused<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        while pausing { pthread_cond_wait(changed, mutex) }
        pausing = true
        while running > 0 { pthread_cond_wait(changed, mutex) }
        pthread_mutex_unlock(mutex)
        defer {
            pthread_mutex_lock(mutex)
            pausing = false
            pthread_cond_broadcast(changed)
            pthread_mutex_unlock(mutex)
        }
        return try body()
    }
}

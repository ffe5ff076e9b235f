#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with one condition variable: the part PauseGate and
/// Wakeup share. pthread primitives because ThreadSanitizer understands them
/// (see `Locked`).
final class ConditionLock: @unchecked Sendable {
    // @unchecked: a pthread mutex and condition are made to be shared.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits for a signal (the lock held).
    func wait() { pthread_cond_wait(condition, mutex) }
    /// Waits for a signal until `deadline` (CLOCK_REALTIME; the lock held); false once it passed.
    func wait(until deadline: timespec) -> Bool {
        var deadline = deadline
        return pthread_cond_timedwait(condition, mutex, &deadline) == 0
    }
    func signal() { pthread_cond_signal(condition) }
    func broadcast() { pthread_cond_broadcast(condition) }
}

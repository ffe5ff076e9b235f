#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a pthread mutex. Used instead of the standard library's
/// `Synchronization.Mutex` because on Linux that one locks with raw futex calls
/// ThreadSanitizer cannot see, which buries real races under false reports;
/// a pthread mutex is understood by TSan (scripts/sanitizers.sh).
public final class Locked<Value>: @unchecked Sendable {
    // @unchecked: `value` is only touched between lock and unlock.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with exclusive access to the value.
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

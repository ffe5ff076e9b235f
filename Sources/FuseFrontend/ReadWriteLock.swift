#if canImport(Glibc)
import Glibc
#endif

/// A pthread reader-writer lock: concurrent reads of one file, exclusive
/// writes and truncation (a partial-unit read-modify-write must not interleave).
final class ReadWriteLock: @unchecked Sendable {
    // @unchecked: pthread_rwlock_t is designed for concurrent use; it lives at a stable address.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    func reading<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    func writing<R>(_ body: () throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}

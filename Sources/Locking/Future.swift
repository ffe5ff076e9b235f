#if canImport(Glibc)
import Glibc
#endif

/// A value another thread computes: `fulfill` once, `wait` for it. For
/// results of jobs on `BoundedWorkers` consumed in submission order.
public final class Future<T>: @unchecked Sendable {
    // @unchecked: `result` is only touched under `lock`.
    private let lock = ConditionLock()
    private var result: Result<T, any Error>?

    public init() {}

    public func fulfill(_ result: Result<T, any Error>) {
        lock.lock()
        self.result = result
        lock.broadcast()
        lock.unlock()
    }

    /// The value, or the error the computation threw.
    public func wait() throws -> T {
        lock.lock()
        defer { lock.unlock() }
        while result == nil { lock.wait() }
        return try result!.get()
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Runs each of `bodies` at once, the first on the calling thread and the
/// others on `HelperThreads`, and returns when all have: for blocking calls
/// that may overlap, such as the fsyncs of different files.
public func runConcurrently(_ bodies: [@Sendable () -> Void]) {
    HelperThreads.shared.run(bodies)
}

/// Threads kept for `runConcurrently`, started as needed (at most `limit`)
/// and then kept waiting: an fsync hands them its other syncs without
/// creating a thread each time. Plain pthreads, a mutex and a condition,
/// which ThreadSanitizer follows (see `Locked`).
final class HelperThreads: @unchecked Sendable {
    // @unchecked: every field is only touched under `lock`.
    static let shared = HelperThreads(limit: 8)
    private let lock = ConditionLock()
    private var queue: [(body: @Sendable () -> Void, batch: Batch)] = []
    private var idle = 0
    private var started = 0
    private let limit: Int

    /// The bodies of one call that are still to finish.
    final class Batch { var left: Int; init(_ left: Int) { self.left = left } }

    init(limit: Int) { self.limit = limit }

    func run(_ bodies: [@Sendable () -> Void]) {
        guard let first = bodies.first else { return }
        let batch = Batch(bodies.count - 1)
        lock.lock()
        for body in bodies.dropFirst() { queue.append((body, batch)) }
        lock.broadcast()  // (idle helpers wait on the same condition as callers)
        var spawn = max(0, min(queue.count - idle, limit - started))
        started += spawn
        lock.unlock()
        while spawn > 0 {
            spawn -= 1
            var thread = pthread_t()
            if pthread_create(&thread, nil, { argument -> UnsafeMutableRawPointer? in
                Unmanaged<HelperThreads>.fromOpaque(argument!).takeUnretainedValue().serve()
            }, Unmanaged.passUnretained(self).toOpaque()) == 0 {
                pthread_detach(thread)
            } else {
                lock.lock()
                started -= 1  // (no thread: the caller runs what is left below)
                lock.unlock()
            }
        }
        first()
        lock.lock()
        defer { lock.unlock() }
        while batch.left > 0 {
            // With no thread to take them (none could be started), run this call's queued bodies here.
            if started == 0, let index = queue.firstIndex(where: { $0.batch === batch }) {
                let job = queue.remove(at: index)
                lock.unlock()
                job.body()
                lock.lock()
                batch.left -= 1
            } else {
                lock.wait()
            }
        }
    }

    private func serve() -> Never {
        lock.lock()
        while true {
            while queue.isEmpty {
                idle += 1
                lock.wait()
                idle -= 1
            }
            let job = queue.removeFirst()
            lock.unlock()
            job.body()
            lock.lock()
            job.batch.left -= 1
            lock.broadcast()
        }
    }
}

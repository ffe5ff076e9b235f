#if canImport(Glibc)
import Glibc
#endif

/// Runs submitted jobs on `width` threads of its own, with at most
/// `2 × width` jobs waiting (`submit` blocks until there is room): for
/// blocking I/O that overlaps well, such as uploads to an object store, with
/// bounded memory. The first job that throws stops the rest: later `submit`s
/// and `finish` rethrow its error. Plain pthreads, a mutex and a condition,
/// which ThreadSanitizer follows (see `Locked`).
public final class BoundedWorkers: @unchecked Sendable {
    // @unchecked: every field is only touched under `lock`.
    private let lock = ConditionLock()
    private var jobs: [@Sendable () throws -> Void] = []
    private var busy = 0
    private var failure: (any Error)?
    private var stopping = false
    private var running = 0
    private let width: Int

    public init(width: Int) {
        self.width = max(1, width)
        for _ in 0..<self.width {
            var thread = pthread_t()
            let retained = Unmanaged.passRetained(self)
            if pthread_create(&thread, nil, { argument -> UnsafeMutableRawPointer? in
                let workers = Unmanaged<BoundedWorkers>.fromOpaque(argument!).takeRetainedValue()
                workers.serve()
                return nil
            }, retained.toOpaque()) == 0 {
                pthread_detach(thread)
                lock.lock()
                running += 1
                lock.unlock()
            } else {
                retained.release()
            }
        }
    }

    /// Queues `job`; throws the first failure of an earlier job instead.
    public func submit(_ job: @escaping @Sendable () throws -> Void) throws {
        lock.lock()
        defer { lock.unlock() }
        if running == 0 {
            // No thread could be started: run it here.
            lock.unlock()
            defer { lock.lock() }
            return try job()
        }
        while failure == nil && jobs.count >= 2 * width { lock.wait() }
        if let failure { throw failure }
        jobs.append(job)
        lock.broadcast()
    }

    /// Waits for every queued job (after a failure: for the running ones),
    /// stops the threads, and rethrows the first failure.
    public func finish() throws {
        lock.lock()
        while (failure == nil && !jobs.isEmpty) || busy > 0 { lock.wait() }
        let failed = failure
        stop()
        lock.unlock()
        if let failed { throw failed }
    }

    /// Drops what is queued and stops the threads once their current job ends (an error path).
    public func cancel() {
        lock.lock()
        stop()
        lock.unlock()
    }

    private func stop() {
        stopping = true
        jobs.removeAll()
        lock.broadcast()
    }

    private func serve() {
        lock.lock()
        defer { lock.unlock() }
        while true {
            while jobs.isEmpty && !stopping { lock.wait() }
            if stopping { return }
            let job = jobs.removeFirst()
            busy += 1
            lock.unlock()
            var error: (any Error)?
            do { try job() } catch let thrown { error = thrown }
            lock.lock()
            busy -= 1
            if let error, failure == nil {
                failure = error
                jobs.removeAll()
            }
            lock.broadcast()
        }
    }
}

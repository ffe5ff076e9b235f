#if canImport(Glibc)
import Glibc
#endif

/// Runs each of `bodies` at once, the first on the calling thread and each
/// other on a thread of its own, and returns when all have: for blocking
/// calls that may overlap, such as the fsyncs of different files. Plain
/// pthreads joined at the end, which ThreadSanitizer follows (see `Locked`).
public func runConcurrently(_ bodies: [@Sendable () -> Void]) {
    final class Job {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var threads: [pthread_t] = []
    for body in bodies.dropFirst() {
        let job = Unmanaged.passRetained(Job(body)).toOpaque()
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { argument in
            Unmanaged<Job>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, job)
        if started == 0 { threads.append(thread) } else { Unmanaged<Job>.fromOpaque(job).takeRetainedValue().body() }  // no thread: run it here
    }
    bodies.first?()
    for thread in threads { pthread_join(thread, nil) }
}

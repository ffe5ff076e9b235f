#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C (SIGINT) or SIGTERM during an import: the chunk loop notices and
/// throws, so the staging directory is removed like after any other failure
/// instead of being left half-made.
public enum Interruption {
    /// Set only by the signal handler; read by the import loop.
    nonisolated(unsafe) static var signalled: sig_atomic_t = 0

    /// Installs the handler (once, for the CLI process).
    public static func catchSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM] {
            signal(s) { _ in Interruption.signalled = 1 }
            sigaddset(&set, s)
        }
        // A parent may have spawned us with them blocked; they must get through.
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    static func check() throws {
        if signalled != 0 { throw BundleError.interrupted }
    }
}

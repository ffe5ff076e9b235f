import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive flock on `<store>/lock`, held by the mount daemon for its
/// whole life: one mount per store, and `umount` can wait for the daemon to
/// finish flushing. The kernel drops it if the daemon dies.
final class StoreLock {
    private let fd: Int32

    /// Takes the lock, waiting up to `timeout` seconds; nil if still held.
    init?(path: String, timeout: Double) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        var waited = 0.0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if waited >= timeout {
                close(fd)
                return nil
            }
            usleep(50_000)
            waited += 0.05
        }
        self.fd = fd
        // Record the holder's pid, for `kill` in tests and for humans.
        let pid = Array("\(getpid())\n".utf8)
        ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit { close(fd) }

    /// Whether some process holds the lock right now.
    static func isHeld(_ path: String) -> Bool { FileLock.isHeld(path) }
}

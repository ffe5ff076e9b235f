import Foundation
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive flock on `<store>/lock`, held by the mount daemon for its
/// whole life: one mount per store, and `umount` can wait for the daemon to
/// finish flushing. The kernel drops it if the daemon dies. The file says
/// who holds it: `<pid>\n[<mount point>\n]` (the mount point once mounted),
/// which is how kmsfs finds its own mounts (the mount table's source is only
/// the name the user gave, and anyone can make a FUSE mount of any name).
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
        write(holder: "\(getpid())\n")
    }

    /// Records where the holder mounted the store.
    func record(mountpoint: String) { write(holder: "\(getpid())\n\(mountpoint)\n") }

    private func write(holder text: String) {
        // Write, then cut to length: a reader never finds the file empty.
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        ftruncate(fd, off_t(bytes.count))
    }

    /// The pid and mount point a lock file names (whether or not it is held now).
    static func holder(_ path: String) -> (pid: Int32, mountpoint: String?)? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, let pid = Int32(first) else { return nil }
        return (pid, lines.count > 1 && !lines[1].isEmpty ? String(lines[1]) : nil)
    }

    deinit { close(fd) }

    /// Whether some process holds the lock right now.
    static func isHeld(_ path: String) -> Bool { FileLock.isHeld(path) }
}

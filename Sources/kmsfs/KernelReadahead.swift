import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's readahead for one mount: `read_ahead_kb` of its backing
/// device info in sysfs. FUSE starts every mount at 128 KiB, which keeps
/// one small READ in flight during a sequential read; a few MiB let the
/// kernel send 1 MiB READs ahead, which the daemon's threads verify and
/// decrypt on every core (cold sequential reads went from about 600 to
/// 1000 MB/s on the bench machine). Random reads are not read ahead (the
/// kernel reads a lone random page as it is), so they pay nothing.
/// Only root may write sysfs: other users' mounts keep the kernel's value.
enum KernelReadahead {
    static let defaultKiB = 4096
    static let maximumKiB = 65536

    static func path(device: String) -> String { "/sys/class/bdi/\(device)/read_ahead_kb" }

    /// Sets the readahead of the mount with device `device` ("major:minor"); false when it could not be set.
    @discardableResult
    static func set(kib: Int, device: String) -> Bool {
        guard !device.isEmpty, !device.contains("/") else { return false }
        let fd = open(path(device: device), O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let text = Array("\(kib)\n".utf8)
        return text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == text.count
    }

    /// The readahead of the mount with device `device`, in KiB, if it can be read.
    static func current(device: String) -> Int? {
        (try? String(contentsOfFile: path(device: device), encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

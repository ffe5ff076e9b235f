import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads /proc/self/mountinfo to find kmsfs mounts. Their source is the name
/// the user gave (`demo`, `demo@snapshot`), as mount(8) and fstab expect.
/// Anyone can make a FUSE mount with any fsname, so a line is believed only
/// when the store agrees: a daemon holds its lock (and, for the live
/// filesystem, recorded that mount point in it), and the mount belongs to the
/// store's owner (FUSE's user_id) or root.
struct MountTable {
    struct Entry {
        var mountpoint: String
        var source: String
        var fsType: String
        /// FUSE's user_id= super option: the uid that made the mount.
        var ownerUID: UInt32?
        /// The mount's device, "major:minor" (its backing device info in /sys/class/bdi).
        var device = ""
    }

    let entries: [Entry]

    static func current() -> MountTable {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return MountTable(entries: []) }
        var out = [Entry]()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = parts.firstIndex(of: "-"), parts.count > dash + 2, parts.count > 4 else { continue }
            let options = parts.count > dash + 3 ? parts[dash + 3].split(separator: ",") : []
            let owner = options.first { $0.hasPrefix("user_id=") }.flatMap { UInt32($0.dropFirst("user_id=".count)) }
            out.append(Entry(mountpoint: unescape(String(parts[4])), source: unescape(String(parts[dash + 2])), fsType: String(parts[dash + 1]), ownerUID: owner,
                             device: String(parts[2])))
        }
        return MountTable(entries: out)
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }

    /// Where the store at `root` is mounted: the mount point its daemon
    /// recorded in `<root>/lock` while holding it, if the mount table agrees
    /// (a kmsfs FUSE mount there, made by the store's owner or root).
    func mountpoints(ofStore root: String) -> [String] {
        let lock = root + "/lock"
        var st = stat()
        guard stat(root, &st) == 0, StoreLock.isHeld(lock), let mountpoint = StoreLock.holder(lock)?.mountpoint,
              let entry = entry(at: mountpoint), entry.fsType == "fuse.kmsfs", entry.ownerUID == st.st_uid || entry.ownerUID == 0
        else { return [] }
        return [mountpoint]
    }

    /// Where snapshot `name` of the store is mounted as a view (a view holds the snapshot's lock).
    func viewMountpoints(ofStore root: String, snapshot name: String, lock: String) -> [String] {
        mountpoints(source: Self.source(store: root, snapshot: name), storeRoot: root, lock: lock)
    }

    /// The mount source (FUSE fsname) of a store or one of its snapshots: its name, as the user gave it.
    static func source(store root: String, snapshot: String? = nil) -> String {
        let name = (root as NSString).lastPathComponent
        return snapshot.map { name + "@" + $0 } ?? name
    }

    /// Lines of `source` made by the store's owner or root, while `lock` is held.
    private func mountpoints(source: String, storeRoot: String, lock: String) -> [String] {
        var st = stat()
        guard stat(storeRoot, &st) == 0, StoreLock.isHeld(lock) else { return [] }
        return entries.filter { $0.fsType == "fuse.kmsfs" && $0.source == source && ($0.ownerUID == st.st_uid || $0.ownerUID == 0) }.map(\.mountpoint)
    }

    func entry(at mountpoint: String) -> Entry? {
        entries.last { $0.mountpoint == mountpoint }
    }
}

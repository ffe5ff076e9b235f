import Foundation

/// Reads /proc/self/mountinfo to find kmsfs mounts (source = store path).
struct MountTable {
    struct Entry {
        var mountpoint: String
        var source: String
        var fsType: String
    }

    let entries: [Entry]

    static func current() -> MountTable {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return MountTable(entries: []) }
        var out = [Entry]()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard let dash = parts.firstIndex(of: "-"), parts.count > dash + 2, parts.count > 4 else { continue }
            out.append(Entry(mountpoint: unescape(String(parts[4])), source: unescape(String(parts[dash + 2])), fsType: String(parts[dash + 1])))
        }
        return MountTable(entries: out)
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }

    func mountpoints(ofStore root: String) -> [String] {
        entries.filter { $0.fsType == "fuse.kmsfs" && $0.source == root }.map(\.mountpoint)
    }

    func entry(at mountpoint: String) -> Entry? {
        entries.last { $0.mountpoint == mountpoint }
    }
}

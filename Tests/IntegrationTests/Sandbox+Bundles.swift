import Foundation
import Testing

extension Sandbox {
    /// Creates and mounts `demo`, runs `fill` on the mount point (or writes
    /// `files`), unmounts, takes snapshot `s1` and exports it to `bundle`.
    func exportDemo(to bundle: String, files: [String: String] = [:], integrity: Bool = true, fill: (String) throws -> Void = { _ in }) throws {
        #expect(try kmsfs(["fs", "create", "demo"] + (integrity ? [] : ["--no-integrity"])).status == 0)
        try mount()
        for (name, text) in files { try write(name, text) }
        try fill(mountpoint)
        try umount()
        #expect(try kmsfs("snapshot", "create", "demo", "s1").status == 0)
        #expect(try kmsfs("snapshot", "export", "demo", "s1", bundle).status == 0)
    }

    /// Creates `demo` with `files` (the first one, `victim`, written first), then
    /// edits the store as someone with write access would: victim's size becomes -1.
    func demoWithImpossibleSize(victim: String = "victim", files: [String: String] = [:]) throws {
        try create()
        try mount()
        try write(victim, "v")
        for (name, text) in files { try write(name, text) }
        try umount()
        let edit = "UPDATE inodes SET size = -1 WHERE ino = (SELECT min(ino) FROM inodes WHERE ino > 1)"
        #expect(try Harness.run("/usr/bin/sqlite3", [store + "/meta.db", edit]).status == 0)
    }
}

import Foundation
import Testing

extension Sandbox {
    /// Creates and mounts `demo`, runs `fill` on the mount point (or writes
    /// `files`), unmounts, takes snapshot `s1` and exports it to `bundle`.
    func exportDemo(to bundle: String, files: [String: String] = [:], fill: (String) throws -> Void = { _ in }) throws {
        try create()
        try mount()
        for (name, text) in files { try write(name, text) }
        try fill(mountpoint)
        try umount()
        #expect(try kmsfs("snapshot", "create", "demo", "s1").status == 0)
        #expect(try kmsfs("snapshot", "export", "demo", "s1", bundle).status == 0)
    }
}

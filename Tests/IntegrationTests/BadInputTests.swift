import Foundation
import Testing

@Suite("Bad input: clear one-line errors, non-zero exits, nothing changed", .serialized)
struct BadInputTests {
    func superblockBytes(_ box: Sandbox) -> Data? { FileManager.default.contents(atPath: box.store + "/superblock") }

    @Test("wrong or missing key file: mount refuses and names the cause")
    func wrongKey() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let before = superblockBytes(box)
        let key = box.home + "/local.key"
        try FileManager.default.moveItem(atPath: key, toPath: key + ".saved")
        var r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 78 && r.stderr.contains("local.key") && r.stderr.contains("unavailable"), "\(r.status) \(r.stderr)")
        #expect(try Harness.shell("head -c 32 /dev/urandom > \(key) && chmod 600 \(key)").status == 0)
        r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 77 && r.stderr.contains("refused to unwrap"), "\(r.status) \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").first?.hasPrefix("kmsfs: error:") == true)
        #expect(superblockBytes(box) == before)
        #expect(MountInfo.isMounted(box.mountpoint) == false)
        try FileManager.default.removeItem(atPath: key)
        try FileManager.default.moveItem(atPath: key + ".saved", toPath: key)
        try box.mount()
        try box.umount()
    }

    @Test("corrupt, truncated or foreign superblock: its own error, exit 65, nothing written")
    func corruptSuperblock() throws {
        let box = try Sandbox()
        try box.create()
        let path = box.store + "/superblock"
        let good = try #require(FileManager.default.contents(atPath: path))
        var flipped = good
        flipped[40] ^= 0x01
        flipped[4096 + 40] ^= 0x01
        try flipped.write(to: URL(fileURLWithPath: path))
        var r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 65 && r.stderr.contains("checksum mismatch"), "\(r.stderr)")
        #expect(FileManager.default.contents(atPath: path) == flipped)
        // One damaged copy is survivable: the other copy is used.
        var one = good
        one[4096 + 40] ^= 0x01
        try one.write(to: URL(fileURLWithPath: path))
        r = try box.kmsfs("fs", "list")
        #expect(r.stdout.contains("keyfile"), "\(r.stdout)")
        try good.prefix(100).write(to: URL(fileURLWithPath: path))
        r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 65 && r.stderr.contains("truncated"), "\(r.stderr)")
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: path))
        r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 65 && r.stderr.contains("bad magic"), "\(r.stderr)")
    }

    @Test("mount point missing, not a directory, or busy")
    func mountpoints() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        var r = try box.kmsfs("mount", "demo", box.root + "/nope")
        #expect(r.status == 71 && r.stderr.contains("does not exist"))
        _ = FileManager.default.createFile(atPath: box.root + "/file", contents: Data())
        r = try box.kmsfs("mount", "demo", box.root + "/file")
        #expect(r.status == 71 && r.stderr.contains("not a directory"))
        try box.mount()
        defer { try? box.umount() }
        r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 71 && r.stderr.contains("busy"), "\(r.stderr)")
        try FileManager.default.createDirectory(atPath: box.root + "/other", withIntermediateDirectories: false)
        r = try box.kmsfs("mount", "demo", box.root + "/other")
        #expect(r.status == 71 && r.stderr.contains("already mounted"), "\(r.stderr)")
        r = try box.kmsfs("fs", "delete", "demo", "--yes")
        #expect(r.status == 64 && r.stderr.contains("mounted"))
    }

    @Test("passphrase-protected filesystem: needs the passphrase, refuses a wrong one")
    func passphrase() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        let pw = box.root + "/pw"
        try "correct horse battery\n".write(toFile: pw, atomically: true, encoding: .utf8)
        var r = try box.kmsfs("fs", "create", "demo", "--passphrase-file", pw)
        #expect(r.status == 0, "\(r.stderr)")
        r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 77 && r.stderr.contains("passphrase"), "\(r.stderr)")
        r = try box.kmsfs("mount", "demo", box.mountpoint, env: ["KMSFS_PASSPHRASE": "wrong"])
        #expect(r.status == 77 && r.stderr.contains("refused"), "\(r.stderr)")
        r = try box.kmsfs("mount", "demo", box.mountpoint, "--passphrase-file", pw)
        #expect(r.status == 0, "\(r.stderr)")
        try box.write("x", "y")
        try box.umount()
    }
}

enum MountInfo {
    static func isMounted(_ path: String) -> Bool {
        ((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }
    }
}

import Foundation
import Testing

/// A home made by an earlier release (Fixtures/kmsfs-1.0-home.tar.gz) still
/// mounts, reads byte for byte, passes fsck, serves its snapshot, imports its
/// bundle and takes new writes with this kmsfs.
@Suite struct FormatCompatibilityTests {
    @Test func aStoreAndBundleOfRelease1_0StillWork() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        let untar = try Harness.run("/bin/tar", ["-xzf", Harness.packageRoot + "/Tests/IntegrationTests/Fixtures/kmsfs-1.0-home.tar.gz", "-C", box.root])
        try #require(untar.status == 0, "\(untar.stderr)")
        #expect(try box.kmsfs("fsck", "legacy").status == 0, "fsck of the old store is clean")
        try box.mount("legacy")
        let check = try Harness.shell("cd \(box.root) && sed 's|mnt/|\(box.mountpoint)/|' sums | sha256sum -c --quiet")
        #expect(check.status == 0, "contents: \(check.stdout) \(check.stderr)")
        #expect(try Harness.run("/usr/bin/getfattr", ["--only-values", "-n", "user.note", box.mountpoint + "/hello.txt"]).stdout == "fixture")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: box.mountpoint + "/link") == "dir/sub/file")
        let attrs = try FileManager.default.attributesOfItem(atPath: box.mountpoint + "/dir/sub/file")
        #expect(attrs[.posixPermissions] as? Int == 0o640)
        #expect((try FileManager.default.attributesOfItem(atPath: box.mountpoint + "/hard"))[.referenceCount] as? Int == 2)
        // New files in the old store: numbers above the old ones, durable across a remount.
        try box.write("new.txt", "written by this release\n")
        try box.umount()
        try box.mount("legacy")
        #expect(try box.read("new.txt") == "written by this release\n")
        try box.umount()

        let view = try box.directory("view")
        try box.mountSnapshot("s1", at: view, of: "legacy")
        #expect(try String(contentsOfFile: view + "/hello.txt", encoding: .utf8) == "written by kmsfs 1.0 (a99914b)\n")
        #expect(!FileManager.default.fileExists(atPath: view + "/new.txt"))
        try box.umount(view)

        let pass = try box.directory("pass")
        #expect(try box.kmsfs(["mount", "legacy-pass", pass], env: ["KMSFS_PASSPHRASE": "fixture passphrase"]).status == 0,
                "a passphrase wrap of the earlier scrypt cost still opens")
        #expect(try String(contentsOfFile: pass + "/p.txt", encoding: .utf8) == "passphrase fs\n")
        try box.umount(pass)

        #expect(try box.kmsfs("snapshot", "verify", box.root + "/bundle").status == 0)
        let imported = try box.kmsfs("snapshot", "import", box.root + "/bundle", "rehydrated")
        #expect(imported.status == 0, "an old bundle imports: \(imported.stderr)")
        try box.mount("rehydrated")
        #expect(try box.read("hello.txt") == "written by kmsfs 1.0 (a99914b)\n")
        try box.umount()

        // fs upgrade gives the old stores integrity; contents, the snapshot and the passphrase wrap stay.
        let mounted = try box.kmsfs("mount", "legacy", box.mountpoint)
        #expect(mounted.stderr.contains("has no integrity"), "an old store mounts with the warning: \(mounted.stderr)")
        try box.umount()
        let upgraded = try box.kmsfs("fs", "upgrade", "legacy")
        #expect(upgraded.status == 0 && upgraded.stdout.contains("integrity on"), "\(upgraded.stdout)\(upgraded.stderr)")
        #expect(try box.kmsfs(["fs", "upgrade", "legacy-pass"], env: ["KMSFS_PASSPHRASE": "fixture passphrase"]).status == 0)
        #expect(try box.kmsfs("scrub", "legacy").status == 0)
        let again = try box.kmsfs("mount", "legacy", box.mountpoint)
        #expect(again.status == 0 && !again.stderr.contains("no integrity"), "\(again.stderr)")
        let after = try Harness.shell("cd \(box.root) && sed 's|mnt/|\(box.mountpoint)/|' sums | sha256sum -c --quiet")
        #expect(after.status == 0, "contents after the upgrade: \(after.stdout) \(after.stderr)")
        #expect(try box.read("new.txt") == "written by this release\n")
        try box.umount()
        try box.mountSnapshot("s1", at: view, of: "legacy")
        #expect(try String(contentsOfFile: view + "/hello.txt", encoding: .utf8) == "written by kmsfs 1.0 (a99914b)\n")
        try box.umount(view)
        // The upgrade gave the snapshot's image content digests: its export verifies deeply and imports.
        #expect(try box.kmsfs("snapshot", "export", "legacy", "s1", box.root + "/upgraded-bundle").status == 0)
        let deep = try box.kmsfs("snapshot", "verify", box.root + "/upgraded-bundle", "--deep")
        #expect(deep.status == 0 && deep.stdout.contains("matches its sealed content digests"), "\(deep.stdout)\(deep.stderr)")
        #expect(try box.kmsfs("snapshot", "import", box.root + "/upgraded-bundle", "upgraded-copy").status == 0)
        #expect(try box.kmsfs(["mount", "legacy-pass", pass], env: ["KMSFS_PASSPHRASE": "fixture passphrase"]).status == 0)
        #expect(try String(contentsOfFile: pass + "/p.txt", encoding: .utf8) == "passphrase fs\n")
        try box.umount(pass)
    }
}

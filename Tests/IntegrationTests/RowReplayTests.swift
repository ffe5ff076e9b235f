import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Per-row rollback (integrity on): one row of meta.db put back from an older
/// copy of it, with the current counters kept. Every row authenticates by
/// itself, so only the row root (the keyed sum over all rows, sealed with the
/// counters) can tell; done with write access to the store only.
@Suite struct RowReplayTests {
    typealias Store = IntegrityTests.Store

    /// `Store`'s filesystem with an xattr on `a`, its meta.db copied to `old.db`,
    /// then through a mount: `a` made 0600, its xattr changed, `dir` renamed to `moved`.
    final class Changed {
        let s: Store
        let old: String

        init() throws {
            s = try Store()
            try s.box.mount()
            #expect(try Harness.run("/usr/bin/setfattr", ["-n", "user.v", "-v", "1", s.box.mountpoint + "/a"]).status == 0)
            try s.box.umount()
            old = s.box.root + "/old.db"
            #expect(try Harness.run("/bin/cp", [s.box.store + "/meta.db", old]).status == 0)
            try s.box.mount()
            #expect(chmod(s.box.mountpoint + "/a", 0o600) == 0)
            #expect(try Harness.run("/usr/bin/setfattr", ["-n", "user.v", "-v", "2", s.box.mountpoint + "/a"]).status == 0)
            #expect(rename(s.box.mountpoint + "/dir", s.box.mountpoint + "/moved") == 0)
            try s.box.umount()
        }

        /// Runs `sql` on the store's meta.db with the old copy attached as `o`, then restores the current copy after `check`.
        func replay(_ what: String, _ sql: String, check: () throws -> Void) throws {
            let current = s.box.root + "/current.db"
            #expect(try Harness.run("/bin/cp", [s.box.store + "/meta.db", current]).status == 0)
            _ = try s.sql("ATTACH '\(old)' AS o; \(sql)")
            try check()
            #expect(try Harness.run("/bin/cp", [current, s.box.store + "/meta.db"]).status == 0, "\(what): restoring")
        }

        func expectMountRefused(_ what: String) throws {
            let r = try s.box.kmsfs("mount", "demo", s.box.mountpoint)
            #expect(r.status == 65 && r.stderr.contains("rows are not the ones its counters sealed"), "\(what): \(r.status) \(r.stderr)")
        }
    }

    @Test("an inode, entry or xattr row put back from an older meta.db, or a deleted row put back, refuses the mount, fsck and scrub (65)")
    func replayedRowsAreRefused() throws {
        guard Harness.fuseAvailable() else { return }
        let t = try Changed()
        let a = t.s.inoA
        try t.replay("inode", "UPDATE inodes SET sealed = (SELECT sealed FROM o.inodes WHERE ino = \(a)) WHERE ino = \(a)") {
            try t.expectMountRefused("the inode row of a, as it was before chmod")
            #expect(try t.s.box.kmsfs("fsck", "demo").status == 65)
            #expect(try t.s.box.kmsfs("scrub", "demo").status == 65)
        }
        try t.replay("entry", "INSERT INTO entries(parent, name, ino, tag) SELECT parent, name, ino, tag FROM o.entries WHERE ino = (SELECT ino FROM entries WHERE id = (SELECT max(id) FROM entries))") {
            try t.expectMountRefused("the old name of the renamed directory, put back beside the new one")
        }
        try t.replay("xattr", "UPDATE xattrs SET value = (SELECT value FROM o.xattrs WHERE o.xattrs.name = xattrs.name)") {
            try t.expectMountRefused("the xattr's old value")
        }
        try t.replay("removed", "DELETE FROM xattrs") { try t.expectMountRefused("a removed row") }
        try t.s.box.mount()
        defer { try? t.s.box.umount() }
        #expect(try t.s.box.read("moved/c") == "c\n", "the genuine store still mounts")
    }

    @Test("--accept-rollback mounts a store with a row put back, as it is, and seals it: the next mount needs no flag")
    func acceptRollbackReseals() throws {
        guard Harness.fuseAvailable() else { return }
        let t = try Changed()
        let a = t.s.inoA
        _ = try t.s.sql("ATTACH '\(t.old)' AS o; UPDATE inodes SET sealed = (SELECT sealed FROM o.inodes WHERE ino = \(a)) WHERE ino = \(a)")
        try t.expectMountRefused("before accepting")
        let r = try t.s.box.kmsfs("mount", "demo", t.s.box.mountpoint, "--accept-rollback")
        try #require(r.status == 0, "\(r.stderr)")
        var st = stat()
        #expect(stat(t.s.box.mountpoint + "/a", &st) == 0 && st.st_mode & 0o777 == 0o644, "the old row, accepted")
        try t.s.box.umount()
        try t.s.box.mount()
        try t.s.box.umount()
    }

    @Test("a row of a snapshot's image put back from an older snapshot's image: the view does not mount, the export does not import")
    func replayedImageRows() throws {
        guard Harness.fuseAvailable() else { return }
        let s = try Store()
        let box = s.box
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        try box.mount()
        #expect(chmod(box.mountpoint + "/a", 0o600) == 0)
        try box.umount()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s2").status == 0)
        let (older, image) = (box.store + "/snapshots/00000001/meta.db", box.store + "/snapshots/00000002/meta.db")
        let bundle = box.root + "/bundle"
        #expect(try box.kmsfs("snapshot", "export", "demo", "s2", bundle).status == 0)
        let replay = "ATTACH '\(older)' AS o; UPDATE inodes SET sealed = (SELECT sealed FROM o.inodes WHERE ino = \(s.inoA)) WHERE ino = \(s.inoA)"
        #expect(try Harness.run("/usr/bin/sqlite3", [image, replay]).status == 0)
        let view = try box.directory("view")
        let r = try box.kmsfs("snapshot", "mount", "demo", "s2", view)
        #expect(r.status == 65 && r.stderr.contains("rows are not the ones its counters sealed"), "\(r.status) \(r.stderr)")
        let f = try Harness.run("/usr/bin/python3", [Harness.packageRoot + "/Tests/IntegrationTests/Scripts/forge_bundle.py", bundle, "s2", replay])
        #expect(f.status == 0, "forging: \(f.stderr)")
        let i = try box.kmsfs("snapshot", "import", bundle, "victim")
        #expect(i.status == 65 && i.stderr.contains("rows are not the ones its counters sealed"), "\(i.status) \(i.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/filesystems/victim"))
    }
}

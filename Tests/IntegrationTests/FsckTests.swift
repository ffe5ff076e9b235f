import Foundation
import Testing

/// `kmsfs fsck`: a clean store is clean; injected damage (wrong link counts, a
/// dangling entry, a nameless inode, a stray data file) is found, repaired,
/// and the filesystem mounts with its files intact. The damage is made with
/// SQL, so these run on XTS-only filesystems: with integrity the same edits
/// are tampering (IntegrityTests), which fsck reports and never repairs.
@Suite struct FsckTests {
    @Test func findsAndRepairsInjectedDamage() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create(integrity: false)
        try box.mount()
        try box.write("keep.txt", "kept\n")
        try FileManager.default.createDirectory(atPath: box.mountpoint + "/dir/sub", withIntermediateDirectories: true)
        try box.write("dir/linked", "two names\n")
        try FileManager.default.linkItem(atPath: box.mountpoint + "/dir/linked", toPath: box.mountpoint + "/dir/sub/other-name")
        try box.write("victim", "loses its name\n")
        let mounted = try box.kmsfs("fsck", "demo")
        #expect(mounted.status == 64 && mounted.stderr.contains("unmount it first"), "\(mounted.stderr)")
        try box.umount()

        let clean = try box.kmsfs("fsck", "demo")
        #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
        #expect(clean.stdout.contains("clean"))

        let db = box.store + "/meta.db"
        func sql(_ statement: String) throws -> String {
            let r = try Harness.run("/usr/bin/sqlite3", [db, statement])
            try #require(r.status == 0, "sqlite3: \(r.stderr)")
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let linked = try sql("SELECT ino FROM entries GROUP BY ino HAVING COUNT(*) = 2")
        _ = try sql("UPDATE inodes SET nlink = 7 WHERE ino = \(linked)")
        _ = try sql("UPDATE inodes SET nlink = 9 WHERE ino = 1")
        _ = try sql("INSERT INTO entries(parent, name, ino) VALUES(1, x'00112233445566778899aabbccddeeff00', 999999)")
        let maxIno = try sql("SELECT MAX(ino) FROM inodes WHERE mode & 61440 = 32768")
        _ = try sql("DELETE FROM entries WHERE ino = \(maxIno)")
        let stray = box.store + "/data/ef/00000000beefbeef"
        #expect(FileManager.default.createFile(atPath: stray, contents: Data(repeating: 1, count: 4096)))

        let found = try box.kmsfs("fsck", "demo")
        #expect(found.status == 4, "\(found.stdout)\(found.stderr)")
        for text in ["inode \(linked) has link count 7, but 2 name(s)", "directory 1 has link count 9, expected 3",
                     "points at missing inode 999999", "inode \(maxIno) has link count 1 but no name",
                     "belongs to no file", "run with --repair"] {
            #expect(found.stdout.contains(text), "missing '\(text)' in:\n\(found.stdout)")
        }
        let repaired = try box.kmsfs("fsck", "demo", "--repair")
        #expect(repaired.status == 1, "\(repaired.stdout)\(repaired.stderr)")
        #expect(repaired.stdout.contains("all problems repaired"))
        #expect(!FileManager.default.fileExists(atPath: stray))
        let again = try box.kmsfs("fsck", "demo", "--json")
        #expect(again.status == 0, "\(again.stdout)")

        try box.mount()
        #expect(try box.read("keep.txt") == "kept\n")
        #expect(try box.read("dir/sub/other-name") == "two names\n")
        let st = try FileManager.default.attributesOfItem(atPath: box.mountpoint + "/dir/linked")
        #expect((st[.referenceCount] as? Int) == 2)
        #expect(!FileManager.default.fileExists(atPath: box.mountpoint + "/victim"))
        try box.umount()
    }
}

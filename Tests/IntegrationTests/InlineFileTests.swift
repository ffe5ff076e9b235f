import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Inline files (integrity on): a file whose data is only its first unit
/// keeps it in the metadata, with no data file; attacks on `inline_units` are
/// done with write access to the store only.
@Suite struct InlineFileTests {
    func dataFiles(_ box: Sandbox) throws -> [String] {
        try FileManager.default.subpathsOfDirectory(atPath: box.store + "/data").filter { $0.count > 3 }
    }

    func sql(_ box: Sandbox, _ statement: String) throws -> String {
        let r = try Harness.run("/usr/bin/sqlite3", [box.store + "/meta.db", statement])
        try #require(r.status == 0, "sqlite3: \(r.stderr)")
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("small files have no data file; append past 4 KiB, truncate, punch and remount read back exactly")
    func roundTrip() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        let m = box.mountpoint
        let small = (0..<3000).map { _ in UInt8.random(in: 0...255) }
        try Data(small).write(to: URL(fileURLWithPath: m + "/small"))
        for i in 0..<50 { try box.write("tiny-\(i)", "file \(i)\n") }
        let files = try dataFiles(box)
        #expect(files.isEmpty, "inline files have no data or tag file: \(files)")
        var st = stat()
        #expect(stat(m + "/small", &st) == 0 && st.st_size == 3000 && st.st_blocks == 8, "one unit's worth of blocks")
        // Past the first unit: the unit moves to a data file and the rest follows.
        let more = (0..<9000).map { _ in UInt8.random(in: 0...255) }
        let h = try #require(FileHandle(forWritingAtPath: m + "/small"))
        h.seekToEndOfFile()
        h.write(Data(more))
        h.closeFile()
        #expect(try dataFiles(box).count == 2, "small has a data file and a tag file now")
        #expect(truncate(m + "/tiny-0", 3) == 0)
        #expect(try Harness.run("/usr/bin/fallocate", ["-p", "-o", "0", "-l", "2", m + "/tiny-1"]).status == 0)
        try box.umount()
        try box.mount()
        #expect(FileManager.default.contents(atPath: m + "/small").map(Array.init) == small + more)
        #expect(try box.read("tiny-0") == "fil")
        #expect(try box.read("tiny-1") == "\0\0le 1\n")
        #expect(try box.read("tiny-49") == "file 49\n")
        try box.umount()
        #expect(try box.kmsfs("scrub", "demo").status == 0)
        #expect(try box.kmsfs("fsck", "demo").status == 0)
    }

    @Test("an inline unit replaced by an older one or another file's, or removed, reads as EIO for that file only")
    func inlineAttacks() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        try box.write("a", "first version\n")
        try box.write("b", "another file\n")
        try box.umount()
        let old = try sql(box, "SELECT hex(unit) FROM inline_units ORDER BY ino LIMIT 1")
        try box.mount()
        try box.write("a", "second version\n")
        try box.umount()
        let attacks = [
            "an older unit": "UPDATE inline_units SET unit = x'\(old)' WHERE ino = (SELECT min(ino) FROM inline_units)",
            "another file's unit": "UPDATE inline_units SET unit = (SELECT unit FROM inline_units WHERE ino = (SELECT max(ino) FROM inline_units)) WHERE ino = (SELECT min(ino) FROM inline_units)",
            "no unit": "DELETE FROM inline_units WHERE ino = (SELECT min(ino) FROM inline_units)",
        ]
        let pristine = box.root + "/pristine.db"
        #expect(try Harness.run("/bin/cp", [box.store + "/meta.db", pristine]).status == 0)
        for (attack, edit) in attacks.sorted(by: { $0.key < $1.key }) {
            #expect(try Harness.run("/bin/cp", [pristine, box.store + "/meta.db"]).status == 0)
            _ = try sql(box, edit)
            try box.mount()
            #expect(throws: (any Error).self, "\(attack): a must not read") { _ = try box.read("a") }
            #expect(try box.read("b") == "another file\n", "\(attack): b is intact")
            try box.umount()
        }
        #expect(try Harness.run("/bin/cp", [pristine, box.store + "/meta.db"]).status == 0)
        try box.mount()
        defer { try? box.umount() }
        #expect(try box.read("a") == "second version\n")
    }
}

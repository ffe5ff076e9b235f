import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Snapshots with integrity on: a snapshot's image holds every file's
/// content digest, and a view checks each file against it when it opens and
/// each read against the tags it computed then. Attacks are done with write
/// access to the store only, no key.
@Suite struct SnapshotIntegrityTests {
    typealias Store = IntegrityTests.Store

    /// `a` and `b` as IntegrityTests.Store makes them, snapshot `s1` taken
    /// unmounted, then units 2 and 3 of `a` overwritten through a mount (so
    /// the snapshot's delta holds their old ciphertext).
    final class Snapshotted {
        let s: Store
        let view: String
        let rewritten: [UInt8]

        init() throws {
            s = try Store()
            view = try s.box.directory("view")
            let r = try s.box.kmsfs("snapshot", "create", "demo", "s1")
            try #require(r.status == 0, "snapshot create: \(r.stderr)")
            rewritten = (0..<2 * 4096).map { _ in UInt8.random(in: 0...255) }
            try s.writeThroughMount(rewritten, at: 2 * 4096, fsync: false)
        }

        var delta: String { s.box.store + "/snapshots/00000001/delta/" + String(format: "%016llx", s.inoA) }

        /// Reads `[offset, offset+count)` of `name` in the mounted view: the bytes, or the errno.
        func read(_ name: String, offset: Int = 0, count: Int) -> Store.Outcome { s.read(name, offset: offset, count: count, in: view) }

        /// Mounts the view, runs `body`, unmounts it.
        func withView(_ body: () throws -> Void) throws {
            try s.box.mountSnapshot("s1", at: view)
            defer { try? s.box.umount(view) }
            try body()
        }

        /// Replaces `count` bytes of `path` at `offset` with `bytes`.
        func put(_ bytes: [UInt8], into path: String, at offset: Int) throws {
            let fd = open(path, O_WRONLY)
            try #require(fd >= 0, "open \(path)")
            defer { close(fd) }
            #expect(pwrite(fd, bytes, bytes.count, off_t(offset)) == bytes.count)
        }

        func bytes(of path: String, at offset: Int, count: Int) throws -> [UInt8] {
            let data = try #require(FileManager.default.contents(atPath: path))
            return Array(data[offset..<offset + count])
        }
    }

    /// The catalog is a text file beside the images: each image is sealed to
    /// its entry (docs/FORMAT.md "Snapshot seals").
    @Test("an edited snapshot catalog (names swapped, a file id limit lowered), an image moved under another snapshot or stripped of its seal, and a relabelled export are refused (exit 65); the genuine ones work")
    func catalogAttacks() throws {
        guard Harness.fuseAvailable() else { return }
        let t = try Snapshotted()  // s1 taken unmounted (its key unwrapped for the seal)
        let s = t.s
        try s.box.mount()
        var r = try s.box.kmsfs("snapshot", "create", "demo", "s2")  // taken by the mount daemon
        try #require(r.status == 0, "snapshot create s2: \(r.stderr)")
        try s.box.umount()
        let catalog = s.box.store + "/snapshots/catalog"
        let genuine = try String(contentsOfFile: catalog, encoding: .utf8)
        func edit(_ change: (String) -> String) throws { try change(genuine).write(toFile: catalog, atomically: false, encoding: .utf8) }
        func expectRefused(_ what: String) throws {
            let view = try s.box.kmsfs("snapshot", "mount", "demo", "s1", t.view)
            #expect(view.status == 65 && view.stderr.contains("seal"), "\(what): the view: \(view.status) \(view.stderr)")
            if view.status == 0 { try? s.box.umount(t.view) }
            let live = try s.box.kmsfs("mount", "demo", s.box.mountpoint)
            #expect(live.status == 65 && live.stderr.contains("seal"), "\(what): the live mount: \(live.status) \(live.stderr)")
            if live.status == 0 { try? s.box.umount() }
            let fsck = try s.box.kmsfs("fsck", "demo")
            #expect(fsck.status != 0 && fsck.stdout.contains("tampered"), "\(what): fsck: \(fsck.status) \(fsck.stdout)\(fsck.stderr)")
        }
        // Names swapped: the view named s1 would show s2's image.
        try edit { $0.replacingOccurrences(of: " s1\n", with: " sX\n").replacingOccurrences(of: " s2\n", with: " s1\n").replacingOccurrences(of: " sX\n", with: " s2\n") }
        try expectRefused("names swapped")
        // Relabelled export: s2's image exported under the name s1, then imported.
        let bundle = s.box.root + "/relabelled"
        #expect(try s.box.kmsfs("snapshot", "export", "demo", "s1", bundle).status == 0)
        r = try s.box.kmsfs("snapshot", "import", bundle, "victim")
        #expect(r.status == 65 && r.stderr.contains("not the one sealed for this snapshot"), "\(r.status) \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.box.home + "/filesystems/victim"))
        // s1's file id limit lowered: later changes of older files would no longer be preserved for it.
        let fields = genuine.split(separator: "\n")[1].split(separator: " ")
        try edit { $0.replacingOccurrences(of: "\n\(fields[0]) \(fields[1]) \(fields[2]) ", with: "\n\(fields[0]) \(fields[1]) 2 ") }
        try expectRefused("a lowered file id limit")
        try edit { $0 }
        // s2's image (with its seal) copied over s1's.
        let image1 = s.box.store + "/snapshots/00000001/meta.db", saved = s.box.root + "/image1"
        #expect(try Harness.run("/bin/cp", [image1, saved]).status == 0)
        #expect(try Harness.run("/bin/cp", [s.box.store + "/snapshots/00000002/meta.db", image1]).status == 0)
        try expectRefused("an image moved under another snapshot")
        // s1's own image without its seal.
        #expect(try Harness.run("/bin/cp", [saved, image1]).status == 0)
        #expect(try Harness.run("/usr/bin/sqlite3", [image1, "DELETE FROM seals WHERE key = 'snapshot'"]).status == 0)
        try expectRefused("a seal stripped")
        // The genuine store: the view reads s1's a, the live mount works, the genuine export imports.
        #expect(try Harness.run("/bin/cp", [saved, image1]).status == 0)
        try t.withView { #expect(t.read("a", count: s.a.count) == .bytes(s.a)) }
        try s.box.mount()
        try s.box.umount()
        let good = s.box.root + "/genuine"
        #expect(try s.box.kmsfs("snapshot", "export", "demo", "s1", good).status == 0)
        r = try s.box.kmsfs("snapshot", "import", good, "copy")
        #expect(r.status == 0, "\(r.stderr)")
    }

    @Test("a snapshot view: a flipped byte in a delta unit, a newer copy of the unit put in the delta, or a changed live unit of an unchanged file make that file EIO; the rest reads back")
    func viewAttacks() throws {
        guard Harness.fuseAvailable() else { return }
        let t = try Snapshotted()
        let s = t.s
        try t.withView {
            #expect(t.read("a", count: s.a.count) == .bytes(s.a), "the view holds a as it was")
            #expect(t.read("b", count: s.b.count) == .bytes(s.b))
        }
        let unit2 = 3 * 4096  // unit 2 in the delta (its unit 0 is the header)
        let genuine = try t.bytes(of: t.delta, at: unit2, count: 4096)

        var flipped = genuine
        flipped[100] ^= 1
        try t.put(flipped, into: t.delta, at: unit2)
        try t.withView {
            #expect(t.read("a", count: 4096) == .errno(EIO), "a flipped byte in the delta")
            #expect(t.read("b", count: s.b.count) == .bytes(s.b), "b is untouched")
        }
        // The live unit 2 (newer content, a genuine tag for this file and unit) put in the delta.
        try t.put(try s.unit(of: s.inoA, 2), into: t.delta, at: unit2)
        try t.withView { #expect(t.read("a", count: 4096) == .errno(EIO), "a newer copy of the unit in the delta") }
        try t.put(genuine, into: t.delta, at: unit2)

        // b did not change after the snapshot: the view reads it from the live data file.
        let liveB = try s.unit(of: s.inoB, 1)
        var changed = liveB
        changed[7] ^= 1
        try s.putUnit(changed, into: s.inoB, unit: 1)
        try t.withView {
            #expect(t.read("b", count: 4096) == .errno(EIO), "a changed live unit under the view")
            #expect(t.read("a", count: s.a.count) == .bytes(s.a), "a reads back once its delta is restored")
        }
        try s.putUnit(liveB, into: s.inoB, unit: 1)
        let log = (try? String(contentsOfFile: s.box.home + "/logs/demo.log", encoding: .utf8)) ?? ""
        #expect(log.contains("not what the snapshot held"), "the view logs the file: \(log.suffix(400))")
    }

    @Test("a view checks every read against the tags of its open: a delta changed after the open is EIO for that unit only")
    func viewChecksReadsAfterOpen() throws {
        guard Harness.fuseAvailable() else { return }
        let t = try Snapshotted()
        let s = t.s
        try t.withView {
            let fd = open(t.view + "/a", O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            var flipped = try t.bytes(of: t.delta, at: 4 * 4096, count: 4096)  // unit 3
            flipped[9] ^= 1
            try t.put(flipped, into: t.delta, at: 4 * 4096)
            var out = [UInt8](repeating: 0, count: 4096)
            #expect(pread(fd, &out, 4096, 3 * 4096) < 0 && errno == EIO, "unit 3 changed after the open")
            #expect(pread(fd, &out, 4096, 2 * 4096) == 4096 && out == Array(s.a[2 * 4096..<3 * 4096]), "unit 2 still reads")
            #expect(pread(fd, &out, 4096, 0) == 4096 && out == Array(s.a[0..<4096]), "unit 0 (live) still reads")
        }
    }

    @Test("a view of an older snapshot reads exactly while newer snapshots are taken and deleted (a delete merges deltas under it)")
    func viewDuringDeletes() throws {
        guard Harness.fuseAvailable() else { return }
        let t = try Snapshotted()  // s1, then units 2 and 3 of a rewritten
        let s = t.s
        #expect(try s.box.kmsfs("snapshot", "create", "demo", "s2").status == 0)
        try s.box.mountSnapshot("s1", at: t.view)
        defer { try? s.box.umount(t.view) }
        try s.box.mount()
        defer { try? s.box.umount() }
        let expected = t.view + "/../expected"
        try Data(s.a).write(to: URL(fileURLWithPath: expected))
        let stop = s.box.root + "/stop"
        // Reopens (each open tags the whole file through the chain s1, s2, s3) and compares, until told to stop.
        let reader = try Harness.launch("/bin/sh", ["-c", """
            n=0; bad=0; while [ ! -e \(stop) ]; do n=$((n+1)); cmp -s \(t.view)/a \(expected) || bad=$((bad+1)); done; echo "$n $bad"
            """], output: s.box.root + "/reader.out")
        for cycle in 0..<10 {
            let c = try s.box.kmsfs("snapshot", "create", "demo", "s3")
            #expect(c.status == 0, "cycle \(cycle): \(c.stderr)")
            let fd = open(s.box.mountpoint + "/a", O_WRONLY)
            let unit = [UInt8](repeating: UInt8(cycle + 1), count: 4096)
            #expect(pwrite(fd, unit, 4096, off_t((cycle % 8) * 4096)) == 4096 && fsync(fd) == 0)
            close(fd)
            let d = try s.box.kmsfs("snapshot", "delete", "demo", "s3")
            #expect(d.status == 0, "cycle \(cycle): \(d.stderr)")
        }
        _ = FileManager.default.createFile(atPath: stop, contents: nil)
        reader.waitUntilExit()
        let counts = try String(contentsOfFile: s.box.root + "/reader.out", encoding: .utf8).split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(counts.count == 2 && counts[0] > 10 && counts[1] == 0, "reads and mismatches in the view: \(counts)")
    }

    @Test("snapshot create of a store a crash left unsealed is refused with a hint; after a mount and unmount it works")
    func snapshotOfACrashedStore() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        // More than one unit: a small file would be inline, in the metadata, never pending.
        let text = String(repeating: "written before the crash\n", count: 400)
        try box.write("f", text)
        let pid = try #require(box.daemonPID())
        #expect(kill(pid, SIGKILL) == 0)
        _ = try Harness.run("/bin/fusermount3", ["-u", "-z", box.mountpoint])
        usleep(300_000)
        let refused = try box.kmsfs("snapshot", "create", "demo", "s1")
        #expect(refused.status == 64 && refused.stderr.contains("not unmounted cleanly") && refused.stderr.contains("mount and unmount it once"),
                "\(refused.status) \(refused.stderr)")
        try box.mount()
        try box.umount()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let view = try box.directory("view")
        try box.mountSnapshot("s1", at: view)
        defer { try? box.umount(view) }
        let read = try String(contentsOfFile: view + "/f", encoding: .utf8)
        #expect(read == text || read.isEmpty, "old or new content: \(read.prefix(80))")
    }
}

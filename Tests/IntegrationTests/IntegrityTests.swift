import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Authenticated storage (integrity on, the default): each attack of the
/// security review is done with write access to the store only, no key, and
/// must be detected: EIO for the range or the operation, a refused mount,
/// fsck reporting it as tampered. Files the attack did not touch read back.
@Suite struct IntegrityTests {
    /// Under scripts/sanitizers.sh's ThreadSanitizer (halt_on_error=1) a daemon
    /// under load can exit at TSan's report on libfuse's cancelled worker threads
    /// ("thread finished with ignores enabled"), before its last flush. Tests that
    /// need what that flush writes (settled tags, the final anchor) say so and
    /// skip there; they run in scripts/test.sh and under AddressSanitizer.
    static func needsUnmountFlush() -> Bool {
        guard ProcessInfo.processInfo.environment["KMSFS_SANITIZER"] == "thread" else { return true }
        print("SKIP under the thread sanitizer: the daemon can stop at a TSan report on libfuse's threads before its last flush")
        return false
    }

    /// A filesystem with `a` (8 units of random bytes) and `b` (2 units), unmounted.
    final class Store {
        let box: Sandbox
        let a: [UInt8]
        let b: [UInt8]
        let inoA: UInt64
        let inoB: UInt64

        init() throws {
            box = try Sandbox()
            try box.create()
            try box.mount()
            a = (0..<8 * 4096).map { _ in UInt8.random(in: 0...255) }
            b = (0..<2 * 4096).map { _ in UInt8.random(in: 0...255) }
            try Data(a).write(to: URL(fileURLWithPath: box.mountpoint + "/a"))
            try Data(b).write(to: URL(fileURLWithPath: box.mountpoint + "/b"))
            try FileManager.default.createDirectory(atPath: box.mountpoint + "/dir", withIntermediateDirectories: false)
            try box.write("dir/c", "c\n")
            let mnt = box.mountpoint
            func ino(_ name: String) throws -> UInt64 {
                try #require(try FileManager.default.attributesOfItem(atPath: mnt + "/" + name)[.systemFileNumber] as? UInt64)
            }
            inoA = try ino("a")
            inoB = try ino("b")
            try box.umount()
        }

        func dataFile(_ ino: UInt64) -> String {
            let hex = String(format: "%016llx", ino)
            return box.store + "/data/" + hex.suffix(2) + "/" + hex
        }

        /// Overwrites 4096 bytes of a data file at unit `unit` (as an attacker with write access would).
        func putUnit(_ bytes: [UInt8], into ino: UInt64, unit: Int) throws {
            let fd = open(dataFile(ino), O_WRONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            #expect(pwrite(fd, bytes, bytes.count, off_t(unit * 4096)) == bytes.count)
        }

        func unit(of ino: UInt64, _ unit: Int) throws -> [UInt8] {
            let data = try #require(FileManager.default.contents(atPath: dataFile(ino)))
            return Array(data[unit * 4096..<(unit + 1) * 4096])
        }

        func sql(_ statement: String) throws -> String {
            let r = try Harness.run("/usr/bin/sqlite3", [box.store + "/meta.db", statement])
            try #require(r.status == 0, "sqlite3: \(r.stderr)")
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        enum Outcome: Equatable {
            case bytes([UInt8])
            case errno(Int32)
        }

        /// Reads `[offset, offset+count)` of a mounted file (under `directory`,
        /// by default the mount point): the bytes, or the errno.
        func read(_ name: String, offset: Int = 0, count: Int, in directory: String? = nil) -> Outcome {
            let fd = open((directory ?? box.mountpoint) + "/" + name, O_RDONLY)
            guard fd >= 0 else { return .errno(errno) }
            defer { close(fd) }
            var out = [UInt8](repeating: 0, count: count)
            let n = pread(fd, &out, count, off_t(offset))
            return n < 0 ? .errno(errno) : .bytes(Array(out[0..<n]))
        }

        /// Mounts, writes `bytes` at `offset` of `a` (fsync'ed when asked), unmounts.
        func writeThroughMount(_ bytes: [UInt8], at offset: Int, fsync wantSync: Bool) throws {
            try box.mount()
            let fd = open(box.mountpoint + "/a", O_WRONLY)
            try #require(fd >= 0)
            #expect(pwrite(fd, bytes, bytes.count, off_t(offset)) == bytes.count)
            if wantSync { #expect(fsync(fd) == 0) }
            close(fd)
            try box.umount()
        }

        /// Mounts, expects unit `unit` of `a` to be EIO and every other unit
        /// and file to read back exactly, then unmounts.
        func expectOnlyUnitFails(_ unit: Int, _ attack: String) throws {
            try box.mount()
            defer { try? box.umount() }
            #expect(read("a", offset: unit * 4096, count: 4096) == .errno(EIO), "\(attack): unit \(unit) must be EIO")
            for other in 0..<8 where other != unit {
                #expect(read("a", offset: other * 4096, count: 4096) == .bytes(Array(a[other * 4096..<(other + 1) * 4096])), "\(attack): unit \(other)")
            }
            #expect(read("b", count: b.count) == .bytes(b), "\(attack): b must be intact")
            #expect(try box.read("dir/c") == "c\n")
            let log = (try? String(contentsOfFile: box.home + "/logs/demo.log", encoding: .utf8)) ?? ""
            #expect(log.contains("inode \(inoA)") && log.contains("data unit \(unit) "), "\(attack): the log must name the inode and unit:\n\(log.suffix(600))")
        }
    }

    @Test("data units: a flipped byte, a unit from another file or offset, an old unit and a zeroed unit read as EIO for that range only")
    func dataUnitAttacks() throws {
        guard Harness.fuseAvailable() else { return }
        let s = try Store()
        let original = try s.unit(of: s.inoA, 3)

        var flipped = original
        flipped[100] ^= 0x01
        try s.putUnit(flipped, into: s.inoA, unit: 3)
        try s.expectOnlyUnitFails(3, "flipped byte")

        try s.putUnit(try s.unit(of: s.inoB, 1), into: s.inoA, unit: 3)
        try s.expectOnlyUnitFails(3, "unit of another file")

        try s.putUnit(try s.unit(of: s.inoA, 5), into: s.inoA, unit: 3)
        try s.expectOnlyUnitFails(3, "unit of another offset")

        try s.putUnit([UInt8](repeating: 0, count: 4096), into: s.inoA, unit: 3)
        try s.expectOnlyUnitFails(3, "zeroed unit")

        // Put back: the real unit verifies again.
        try s.putUnit(original, into: s.inoA, unit: 3)
        try s.box.mount()
        #expect(s.read("a", count: s.a.count) == .bytes(s.a))
        // An old version: overwrite unit 6 through the mount (fsync'ed), then put the old ciphertext back.
        try s.box.umount()
        let oldUnit6 = try s.unit(of: s.inoA, 6)
        try s.writeThroughMount([UInt8](repeating: 0x42, count: 4096), at: 6 * 4096, fsync: true)
        try s.putUnit(oldUnit6, into: s.inoA, unit: 6)
        try s.box.mount()
        #expect(s.read("a", offset: 6 * 4096, count: 4096) == .errno(EIO), "an old copy of a unit must not verify")
        #expect(s.read("a", offset: 0, count: 6 * 4096) == .bytes(Array(s.a[0..<6 * 4096])))
        try s.box.umount()
    }

    @Test("an old copy of a whole data file reads as EIO where it differs; with its old tag file, or with an emptied record, the file does not open")
    func restoredDataFile() throws {
        guard Harness.fuseAvailable() else { return }
        guard Self.needsUnmountFlush() else { return }
        let s = try Store()
        let old = s.box.root + "/old-a", oldTags = s.box.root + "/old-a.tags"
        try FileManager.default.copyItem(atPath: s.dataFile(s.inoA), toPath: old)
        try FileManager.default.copyItem(atPath: s.dataFile(s.inoA) + ".tags", toPath: oldTags)
        // Not fsync'ed: the unmount settles the tags of closed files.
        try s.writeThroughMount([UInt8](repeating: 0x37, count: 8192), at: 2 * 4096, fsync: false)
        try FileManager.default.removeItem(atPath: s.dataFile(s.inoA))
        try FileManager.default.copyItem(atPath: old, toPath: s.dataFile(s.inoA))
        try s.box.mount()
        #expect(s.read("a", offset: 2 * 4096, count: 4096) == .errno(EIO))
        #expect(s.read("a", offset: 3 * 4096, count: 4096) == .errno(EIO))
        #expect(s.read("a", offset: 0, count: 8192) == .bytes(Array(s.a[0..<8192])))
        #expect(s.read("b", count: s.b.count) == .bytes(s.b))
        try s.box.umount()

        // The data file and its tag file put back together, or a unit zeroed and its record
        // emptied: the tag file no longer matches the digest the inode's sealed row holds.
        try FileManager.default.removeItem(atPath: s.dataFile(s.inoA) + ".tags")
        try FileManager.default.copyItem(atPath: oldTags, toPath: s.dataFile(s.inoA) + ".tags")
        try s.box.mount()
        #expect(s.read("a", count: 4096) == .errno(EIO), "an older data file with its older tags must not verify")
        #expect(s.read("b", count: s.b.count) == .bytes(s.b))
        try s.box.umount()
        try s.putUnit([UInt8](repeating: 0, count: 4096), into: s.inoB, unit: 1)
        let fd = open(s.dataFile(s.inoB) + ".tags", O_WRONLY)
        try #require(fd >= 0)
        #expect(pwrite(fd, [UInt8](repeating: 0, count: 32), 32, 32) == 32)
        close(fd)
        try s.box.mount()
        #expect(s.read("b", count: 4096) == .errno(EIO), "a zeroed unit with an emptied record must not read as a hole")
        try s.box.umount()
        let scrub = try s.box.kmsfs("scrub", "demo")
        #expect(scrub.status == 65 && scrub.stdout.contains("not the ones its inode recorded"), "\(scrub.stdout)")
    }

    @Test("edited mode, uid, size or nlink, a swapped entry or a moved sealed row: EIO for that file; fsck says tampered and --repair does not trust it")
    func metadataAttacks() throws {
        guard Harness.fuseAvailable() else { return }
        let s = try Store()
        let db = s.box.store + "/meta.db"
        let pristine = s.box.root + "/meta.db.pristine"
        try FileManager.default.copyItem(atPath: db, toPath: pristine)
        #expect(try s.sql("SELECT count(*) FROM inodes WHERE uid != 0 OR gid != 0 OR atime != 0 OR mtime != 0 OR ctime != 0") == "0",
                "owners and times must not be stored in the clear")
        let edits = [
            "mode": "UPDATE inodes SET mode = 33279 WHERE ino = \(s.inoA)",
            "uid": "UPDATE inodes SET uid = 65534 WHERE ino = \(s.inoA)",
            "size": "UPDATE inodes SET size = 4096 WHERE ino = \(s.inoA)",
            "nlink": "UPDATE inodes SET nlink = 2 WHERE ino = \(s.inoA)",
            "sealed": "UPDATE inodes SET sealed = (SELECT sealed FROM inodes WHERE ino = \(s.inoB)) WHERE ino = \(s.inoA)",
            "swapped entries": """
                UPDATE entries SET ino = CASE ino WHEN \(s.inoA) THEN \(s.inoB) ELSE \(s.inoA) END WHERE ino IN (\(s.inoA), \(s.inoB))
                """,
        ]
        for (attack, edit) in edits.sorted(by: { $0.key < $1.key }) {
            try? FileManager.default.removeItem(atPath: db)
            try FileManager.default.copyItem(atPath: pristine, toPath: db)
            _ = try s.sql(edit)
            try s.box.mount("demo", ["--accept-rollback"])  // the pristine copy is older than the last mount
            var st = stat()
            #expect(stat(s.box.mountpoint + "/a", &st) != 0 && errno == EIO, "\(attack): stat of a must be EIO")
            if attack != "swapped entries" {
                #expect(s.read("b", count: s.b.count) == .bytes(s.b), "\(attack): b must be intact")
            }
            #expect(try s.box.read("dir/c") == "c\n", "\(attack)")
            try s.box.umount()
            let fsck = try s.box.kmsfs("fsck", "demo", "--repair")
            #expect(fsck.status == 4 && fsck.stdout.contains("tampered"), "\(attack): \(fsck.stdout)\(fsck.stderr)")
            #expect(!fsck.stdout.contains("repaired:"), "\(attack): --repair must not fix tampering: \(fsck.stdout)")
        }
        // The root: the mount itself is refused.
        try? FileManager.default.removeItem(atPath: db)
        try FileManager.default.copyItem(atPath: pristine, toPath: db)
        _ = try s.sql("UPDATE inodes SET nlink = 5 WHERE ino = 1")
        let root = try s.box.kmsfs("mount", "demo", s.box.mountpoint, "--accept-rollback")
        #expect(root.status == 65 && root.stderr.contains("inode 1"), "a tampered root must not mount: \(root.stderr)")
        try? FileManager.default.removeItem(atPath: db)
        try FileManager.default.copyItem(atPath: pristine, toPath: db)
        #expect(try s.box.kmsfs("fsck", "demo").status == 0)
    }

    @Test("kmsfs scrub, mounted or not: clean is 0; a bad unit or row is 65 with the place; status counts integrity failures")
    func scrub() throws {
        guard Harness.fuseAvailable() else { return }
        let s = try Store()
        var r = try s.box.kmsfs("scrub", "demo")
        #expect(r.status == 0 && r.stdout.contains("all verified") && r.stdout.contains("3 files"), "\(r.stdout)\(r.stderr)")
        var flipped = try s.unit(of: s.inoB, 1)
        flipped[7] ^= 0x80
        try s.putUnit(flipped, into: s.inoB, unit: 1)
        r = try s.box.kmsfs("scrub", "demo", "--json")
        let report = Harness.json(r.stdout)
        #expect(r.status == 65 && report["badUnits"] as? Int == 1 && report["units"] as? Int == 11, "\(r.stdout)\(r.stderr)")
        #expect((report["firstBad"] as? [String])?.first?.contains("inode \(s.inoB), unit 1") == true, "\(r.stdout)")
        try s.box.mount()
        r = try s.box.kmsfs("scrub", "demo")
        #expect(r.status == 65 && r.stdout.contains("bad: inode \(s.inoB), unit 1"), "through the daemon: \(r.stdout)\(r.stderr)")
        #expect(s.read("b", offset: 4096, count: 4096) == .errno(EIO))
        let statusText = try s.box.kmsfs("status", "demo", "--json").stdout
        let status = ((try? JSONSerialization.jsonObject(with: Data(statusText.utf8))) as? [[String: Any]])?.first ?? [:]
        #expect((status["integrityFailures"] as? Int ?? 0) >= 1 && status["integrity"] as? String == "on", "\(status)")
        try s.box.umount()
        _ = try s.sql("UPDATE inodes SET uid = 7 WHERE ino = \(s.inoA)")
        r = try s.box.kmsfs("scrub", "demo")
        #expect(r.status == 65 && r.stdout.contains("tampered: inode \(s.inoA)"), "\(r.stdout)\(r.stderr)")
        let events = try String(contentsOfFile: s.box.home + "/events.log", encoding: .utf8)
        #expect(events.contains("\"event\":\"scrub\"") && events.contains("\"result\":\"failed\""))
    }

    @Test("a rolled-back meta.db or store is refused with both generations (65); --accept-rollback mounts it and re-anchors")
    func rollback() throws {
        guard Harness.fuseAvailable() else { return }
        guard Self.needsUnmountFlush() else { return }
        let s = try Store()
        let saved = s.box.root + "/store-copy"
        #expect(try Harness.run("/bin/cp", ["-a", s.box.store, saved]).status == 0)
        try s.box.mount()
        try s.box.write("later", "written after the copy\n")
        try s.box.umount()
        let anchor = try String(contentsOfFile: s.box.home + "/anchors/demo." + (try uuid(s.box)), encoding: .utf8)
        #expect(anchor.hasPrefix("kmsfs-anchor 1 "))

        // meta.db alone
        let current = s.box.root + "/store-current"
        #expect(try Harness.run("/bin/cp", ["-a", s.box.store, current]).status == 0)
        for file in ["meta.db", "meta.db-wal", "meta.db-shm"] {
            try? FileManager.default.removeItem(atPath: s.box.store + "/" + file)
            if FileManager.default.fileExists(atPath: saved + "/" + file) {
                try FileManager.default.copyItem(atPath: saved + "/" + file, toPath: s.box.store + "/" + file)
            }
        }
        var r = try s.box.kmsfs("mount", "demo", s.box.mountpoint)
        #expect(r.status == 65 && r.stderr.contains("rolled back") && r.stderr.contains("generation"), "\(r.stderr)")
        let numbers = r.stderr.split(whereSeparator: { !$0.isNumber }).compactMap { UInt64($0) }
        #expect(numbers.count >= 2 && numbers[0] < numbers[1], "both generations, older first: \(r.stderr)")

        // the whole store directory
        try FileManager.default.removeItem(atPath: s.box.store)
        #expect(try Harness.run("/bin/cp", ["-a", saved, s.box.store]).status == 0)
        r = try s.box.kmsfs("mount", "demo", s.box.mountpoint)
        #expect(r.status == 65 && r.stderr.contains("rolled back"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.box.mountpoint + "/later"))
        try s.box.mount("demo", ["--accept-rollback"])
        #expect(!FileManager.default.fileExists(atPath: s.box.mountpoint + "/later"))
        #expect(s.read("a", count: s.a.count) == .bytes(s.a))
        try s.box.umount()
        try s.box.mount()  // re-anchored: a plain mount works now
        try s.box.umount()
        let events = try String(contentsOfFile: s.box.home + "/events.log", encoding: .utf8)
        #expect(events.contains("\"event\":\"rollback-accepted\""))
    }

    @Test("an imported twin (same UUID and keys) swapped in is refused; after kill -9 the anchor keeps the fsync'ed generations")
    func twinsAndCrashedDaemons() throws {
        guard Harness.fuseAvailable() else { return }
        let s = try Store()
        let box = s.box
        try box.mount()
        try box.umount()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        #expect(try box.kmsfs("snapshot", "export", "demo", "s1", box.root + "/bundle").status == 0)
        #expect(try box.kmsfs("snapshot", "import", box.root + "/bundle", "copy").status == 0)
        let copy = try box.directory("copy-mnt")
        #expect(try box.kmsfs("mount", "copy", copy).status == 0)
        for i in 0..<5 {
            #expect(try Harness.shell("echo \(i) > \(copy)/f\(i) && sync \(copy)/f\(i)").status == 0)
        }
        try box.umount(copy)
        let saved = box.root + "/demo-store"
        #expect(try Harness.run("/bin/mv", [box.store, saved]).status == 0)
        #expect(try Harness.run("/bin/cp", ["-a", box.home + "/filesystems/copy", box.store]).status == 0)
        var r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 65 && r.stderr.contains("another copy"), "a twin with a higher generation: \(r.stderr)")
        try FileManager.default.removeItem(atPath: box.store)
        #expect(try Harness.run("/bin/mv", [saved, box.store]).status == 0)

        let before = box.root + "/before-crash"
        #expect(try Harness.run("/bin/cp", ["-a", box.store, before]).status == 0)
        try box.mount()
        for i in 0..<5 {
            #expect(try Harness.shell("echo \(i) > \(box.mountpoint)/g\(i) && sync \(box.mountpoint)/g\(i)").status == 0)
        }
        usleep(2_500_000)  // the daemon anchors once a second
        let pid = try #require(box.daemonPID())
        #expect(kill(pid, SIGKILL) == 0)
        usleep(300_000)
        _ = try Harness.run("/bin/fusermount3", ["-u", "-z", box.mountpoint])
        try FileManager.default.removeItem(atPath: box.store)
        #expect(try Harness.run("/bin/cp", ["-a", before, box.store]).status == 0)
        r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 65 && r.stderr.contains("older than generation"), "the store from before the fsyncs: \(r.stderr)")
    }

    @Test("clearing the integrity bit of the superblock (checksum recomputed) fails the key check")
    func integrityBitDowngrade() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let downgrade = """
            import hashlib, struct, sys
            path = sys.argv[1]
            data = bytearray(open(path, "rb").read())
            for slot in (0, 4096):
                b = data[slot:slot + 4096]
                n1, n2, n3 = struct.unpack_from("<HHH", b, 96)
                end = 112 + n1 + n2 + n3
                flags = struct.unpack_from("<I", b, 12)[0] & ~0x2
                struct.pack_into("<I", b, 12, flags)
                struct.pack_into("<H", b, 10, 0)
                b[end:end + 32] = hashlib.sha256(bytes(b[:end])).digest()
                data[slot:slot + 4096] = b
            open(path, "wb").write(data)
            """
        #expect(try Harness.run("/usr/bin/python3", ["-c", downgrade, box.store + "/superblock"]).status == 0)
        let r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 77 && r.stderr.contains("key-check"), "a downgraded superblock must not mount: \(r.stderr)")
    }

    @Test("fs create --no-integrity: XTS only, shown in fs list, warned at mount")
    func noIntegrity() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        #expect(try box.kmsfs("fs", "create", "demo", "--no-integrity").status == 0)
        try box.create("other")
        let list = try box.kmsfs("fs", "list", "--json")
        let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: String]] ?? []
        #expect(rows.first { $0["name"] == "demo" }?["integrity"] == "none")
        #expect(rows.first { $0["name"] == "other" }?["integrity"] == "on")
        let r = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(r.status == 0 && r.stderr.contains("has no integrity"), "\(r.stderr)")
        try box.write("x", "plain xts\n")
        try box.umount()
        #expect(try Harness.run("/usr/bin/sqlite3", [box.store + "/meta.db", "SELECT value FROM meta WHERE key = 'schema_version'"]).stdout.hasPrefix("1"))
        #expect(!FileManager.default.fileExists(atPath: box.home + "/anchors/demo." + (try uuid(box))))
    }

    /// The hard case of crash consistency: units overwritten in place, the
    /// daemon killed at random points, many of them between a unit's tag and
    /// its data. After each kill every unit must read, never EIO, as a
    /// version at least as new as the last one fsync'ed.
    @Test("kill -9 during random in-place overwrites: every unit reads as its old or new content, never EIO; fsync'ed versions kept")
    func killNineDuringOverwrites() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let journal = box.root + "/journal"
        _ = FileManager.default.createFile(atPath: journal, contents: nil)
        let units = 64
        let workload = """
            import os, random, struct, sys
            root, journal, seed, units = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
            rng = random.Random(seed)
            def block(u, v):
                return struct.pack("<QQ", u, v) * 256
            path = f"{root}/db"
            if not os.path.exists(path):
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, b"".join(block(u, 0) for u in range(units))); os.fsync(fd); os.close(fd)
            j = open(journal, "a")
            fd = os.open(path, os.O_RDWR)
            v = seed * 1000000
            while True:
                v += 1
                u = rng.randrange(units)
                n = rng.choice((1, 1, 2, 5))
                n = min(n, units - u)
                os.pwrite(fd, b"".join(block(x, v) for x in range(u, u + n)), u * 4096)
                if rng.random() < 0.2:
                    os.fsync(fd)
                    j.write(f"{u} {n} {v}\\n"); j.flush(); os.fsync(j.fileno())
            """
        let verify = """
            import os, struct, sys
            root, journal, units = sys.argv[1], sys.argv[2], int(sys.argv[3])
            synced = [0] * units
            for line in open(journal):
                p = line.split()
                if len(p) == 3:
                    u, n, v = int(p[0]), int(p[1]), int(p[2])
                    for x in range(u, u + n):
                        synced[x] = max(synced[x], v)
            fd = os.open(f"{root}/db", os.O_RDONLY)
            for u in range(units):
                try:
                    data = os.pread(fd, 4096, u * 4096)
                except OSError as e:
                    print(f"unit {u}: {e}"); sys.exit(1)
                x, v = struct.unpack_from("<QQ", data)
                assert data == struct.pack("<QQ", u, v) * 256, f"unit {u} is garbage"
                assert v >= synced[u], f"unit {u} went back from fsync'ed version {synced[u]} to {v}"
            print("ok")
            """
        for round in 0..<5 {
            // Without the writeback cache every write reaches the daemon at once: more kills land between tag and unit.
            try box.mount("demo", round % 2 == 0 ? ["--no-writeback"] : [])
            let worker = try Harness.launch("/usr/bin/python3", ["-c", workload, box.mountpoint, journal, String(round + 1), String(units)])
            try box.killDaemon(during: worker)
            try box.mount()
            let r = try Harness.run("/usr/bin/python3", ["-c", verify, box.mountpoint, journal, String(units)])
            #expect(r.status == 0 && r.stdout.hasPrefix("ok"), "round \(round): \(r.stdout)\(r.stderr)")
            try box.umount()
            let scrubbed = try box.kmsfs("fsck", "demo")
            #expect(scrubbed.status == 0, "round \(round): \(scrubbed.stdout)\(scrubbed.stderr)")
        }
        let lines = (try? String(contentsOfFile: journal, encoding: .utf8))?.split(separator: "\n").count ?? 0
        #expect(lines > 0, "the workload must have fsync'ed some overwrites")
    }

    /// A unit write that fails after its record was written (a full disk),
    /// then one killed between record and data twice in a row (the second
    /// write must not take the first one's unwritten tag for what is on disk).
    @Test("a failed unit write, and two kills in a row between a record and its unit, leave the old content readable, never EIO")
    func failedAndTwiceInterruptedWrites() throws {
        guard Harness.fuseAvailable() else { return }
        let s = try Store()
        let writer = """
            import errno, os, sys
            fd = os.open(sys.argv[1], os.O_WRONLY)
            try:
                os.pwrite(fd, bytes([int(sys.argv[3])]) * 4096, int(sys.argv[2]) * 4096); os.fsync(fd); print("written")
            except OSError as e:
                print(errno.errorcode[e.errno])
            """
        func attempt(unit: Int, byte: UInt8, fault: String, kill: Bool) throws -> String {
            s.box.env = ["KMSFS_FAULT": fault]  // the unit's record is write 1, the unit write 2
            try s.box.mount("demo", ["--no-writeback"])
            s.box.env = [:]
            let r = try Harness.run("/usr/bin/python3", ["-c", writer, s.box.mountpoint + "/a", String(unit), String(byte)])
            if kill {
                let pid = try #require(s.box.daemonPID())
                #expect(Glibc.kill(pid, SIGKILL) == 0)
                usleep(300_000)
                _ = try Harness.run("/bin/fusermount3", ["-u", "-z", s.box.mountpoint])
                usleep(300_000)
            } else {
                try s.box.umount()
            }
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try attempt(unit: 2, byte: 0x41, fault: "write:28:1", kill: false) == "ENOSPC")
        #expect(try attempt(unit: 5, byte: 0x42, fault: "write:5:1", kill: true) == "EIO")
        #expect(try attempt(unit: 5, byte: 0x43, fault: "write:5:1", kill: true) == "EIO")
        try s.box.mount()
        #expect(s.read("a", count: s.a.count) == .bytes(s.a), "every unit reads as its old content")
        try s.box.umount()
        #expect(try s.box.kmsfs("scrub", "demo").status == 0)
    }

    /// fs upgrade killed (SIGKILL) between each pair of its steps: the store is
    /// always the old one or the new one, reads byte for byte, and upgrading
    /// again (or the next mount) completes it.
    @Test("fs upgrade killed at each step: old or new store, contents intact, a second run finishes")
    func upgradeKilledInTheMiddle() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create(integrity: false)
        try box.mount()
        let fill = "import os, sys\nfor i in range(6):\n    open(f'{sys.argv[1]}/f{i}', 'wb').write(os.urandom(40000 * (i + 1)))\nos.symlink('f1', f'{sys.argv[1]}/l')"
        #expect(try Harness.run("/usr/bin/python3", ["-c", fill, box.mountpoint]).status == 0)
        let sums = try Harness.shell("cd \(box.mountpoint) && sha256sum f*").stdout
        try box.umount()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let pristine = box.root + "/pristine"
        #expect(try Harness.run("/bin/cp", ["-a", box.store, pristine]).status == 0)
        for (point, committed) in [("upgrade-metadata", false), ("upgrade-tags:3", false), ("upgrade-superblock", true), ("upgrade-rename:1", true)] {
            try FileManager.default.removeItem(atPath: box.store)
            #expect(try Harness.run("/bin/cp", ["-a", pristine, box.store]).status == 0)
            try? FileManager.default.removeItem(atPath: box.home + "/anchors")  // the previous round's upgraded store is not a rollback target
            let killed = try box.kmsfs(["fs", "upgrade", "demo"], env: ["KMSFS_CRASH_AT": point])
            #expect(killed.status == SIGKILL || killed.status == 128 + SIGKILL, "\(point): the upgrade must have been killed: \(killed.status) \(killed.stderr)")
            let list = try box.kmsfs("fs", "list", "--json")
            let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: String]] ?? []
            #expect(rows.first?["integrity"] == (committed ? "on" : "none"), "\(point): \(rows)")
            let mount = try box.kmsfs("mount", "demo", box.mountpoint)
            try #require(mount.status == 0, "\(point): the store must mount: \(mount.stderr)")
            #expect(try Harness.shell("cd \(box.mountpoint) && sha256sum f*").stdout == sums, "\(point): contents")
            try box.umount()
            let finish = try box.kmsfs("fs", "upgrade", "demo")
            #expect(finish.status == 0, "\(point): \(finish.stdout)\(finish.stderr)")
            #expect(try box.kmsfs("scrub", "demo").status == 0, "\(point): scrub after finishing")
            #expect(try box.kmsfs("fsck", "demo").status == 0, "\(point): fsck after finishing")
            try box.mountSnapshot("s1", at: try box.directory("view"))
            #expect(try Harness.shell("cd \(box.root)/view && sha256sum f*").stdout == sums, "\(point): the snapshot")
            try box.umount(box.root + "/view")
        }
    }

    private func uuid(_ box: Sandbox) throws -> String {
        let r = try box.kmsfs("fs", "list", "--json")
        let rows = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: String]] ?? []
        return try #require(rows.first { $0["name"] == "demo" }?["uuid"])
    }
}

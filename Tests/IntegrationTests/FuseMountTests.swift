import Foundation
import Testing

@Suite("FUSE mount", .serialized)
struct FuseMountTests {
    @Test("every POSIX operation of the checklist behaves as on ext4 (posix_ops.py)")
    func posixOperations() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        defer { try? box.umount() }
        let r = try Harness.run("/usr/bin/python3", [Harness.packageRoot + "/Tests/IntegrationTests/Scripts/posix_ops.py", box.mountpoint])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains(" passed, 0 failed"), "\(r.stdout)")
    }

    /// fsx.py: seeded random POSIX operations on kmsfs and on ext4 side by side,
    /// compared after every step. CI runs a bounded number; for a long run:
    /// `Tests/IntegrationTests/Scripts/fsx.py --seeds 1000 --ops 10000 MOUNT REFDIR`.
    @Test("random operation sequences give the same results, errnos, contents and attributes as ext4 (fsx.py)")
    func differentialRandomOperations() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        defer { try? box.umount() }
        let reference = box.root + "/reference"
        try FileManager.default.createDirectory(atPath: reference, withIntermediateDirectories: true)
        let seed = Int(ProcessInfo.processInfo.environment["KMSFS_FSX_SEED"] ?? "") ?? Int(time(nil) % 100_000)
        let r = try Harness.run("/usr/bin/python3", [Harness.packageRoot + "/Tests/IntegrationTests/Scripts/fsx.py",
                                                     "--seed", String(seed), "--seeds", "6", "--ops", "3000", box.mountpoint, reference])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("6 seeds, ") && r.stdout.contains("no mismatch"), "\(r.stdout)")
        print("fsx: seeds \(seed)..\(seed + 5): \(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    @Test("concurrent writers to one file (disjoint and overlapping) and renames in one directory (concurrency.py)")
    func concurrentWritersAndRenames() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        defer { try? box.umount() }
        let script = Harness.packageRoot + "/Tests/IntegrationTests/Scripts/concurrency.py"
        let reference = box.root + "/reference"
        try FileManager.default.createDirectory(atPath: reference, withIntermediateDirectories: true)
        let onExt4 = try Harness.run("/usr/bin/python3", [script, reference])
        #expect(onExt4.status == 0, "the checks must hold on ext4: \(onExt4.stdout)\(onExt4.stderr)")
        let r = try Harness.run("/usr/bin/python3", [script, box.mountpoint])
        #expect(r.status == 0 && r.stdout.hasPrefix("ok"), "\(r.stdout)\(r.stderr)")
    }

    @Test("write, unmount, remount: byte-identical; a source tree copy diffs clean; no plaintext or names in the store")
    func roundTripAndNoPlaintext() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        let marker = "KMSFS-PLAINTEXT-MARKER-7f3a9c"
        let random = try Harness.shell("head -c 3000000 /dev/urandom > \(box.root)/blob && cp \(box.root)/blob \(box.mountpoint)/blob")
        #expect(random.status == 0)
        try box.write("secret-\(marker).txt", String(repeating: marker + "\n", count: 2000))
        try FileManager.default.createDirectory(atPath: box.mountpoint + "/dir-\(marker)", withIntermediateDirectories: false)
        #expect(try Harness.shell("cp -a \(Harness.packageRoot)/Sources \(box.mountpoint)/src && diff -r \(Harness.packageRoot)/Sources \(box.mountpoint)/src").status == 0)
        #expect(try Harness.shell("setfattr -n user.note -v \(marker) \(box.mountpoint)/blob 2>/dev/null || python3 -c 'import os; os.setxattr(\"\(box.mountpoint)/blob\", \"user.\(marker)\", b\"\(marker)\")'").status == 0)
        try box.umount()
        try box.mount()
        #expect(try Harness.shell("cmp \(box.root)/blob \(box.mountpoint)/blob && diff -r \(Harness.packageRoot)/Sources \(box.mountpoint)/src").status == 0)
        #expect(try box.read("secret-\(marker).txt").hasPrefix(marker))
        try box.umount()
        // The store holds ciphertext only: neither contents, names, nor xattrs appear.
        let grep = try Harness.shell("grep -rl -a '\(marker)' \(box.store); grep -rl -a 'FileSystem+Directories' \(box.store); grep -rl -a 'Trampolines' \(box.store); true")
        #expect(grep.stdout.isEmpty, "plaintext found in: \(grep.stdout)")
    }

    /// Group commit (docs/FORMAT.md "Metadata durability"): after kill -9
    /// the tree must be exactly the one after some prefix of the operations
    /// (each commit atomic, none reordered), at or past the last fsync'ed one.
    @Test("kill -9 during creates, writes, renames and unlinks: the tree is the one after a prefix of them, at least up to the last fsyncdir; fsck clean")
    func killNineDuringMetadataOperations() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let model = """
            def steps():
                names = []
                for i in range(4000):
                    yield ("create", f"f{i}", None)
                    yield ("fill", f"f{i}", (f"{i}:" * (1 + i % 400)).encode())
                    names.append(f"f{i}")
                    if i % 5 == 4 and len(names) > 2:
                        old = names.pop(-3); head, _, tail = old.rpartition("/"); new = (head + "/" if head else "") + "r" + tail
                        yield ("rename", old, new); names.append(new)
                    if i % 7 == 6 and len(names) > 4:
                        yield ("unlink", names.pop(-5), None)
                    if i % 11 == 10:
                        yield ("mkdir", f"d{i}", None)
                        old = names.pop(); yield ("rename", old, f"d{i}/{old}"); names.append(f"d{i}/{old}")
            """
        let workload = model + """

            import os, sys
            root, journal = sys.argv[1], sys.argv[2]
            os.makedirs(root)
            dirfd = os.open(root, os.O_RDONLY)
            j = open(journal, "w")
            for n, (kind, name, arg) in enumerate(steps(), 1):
                path = f"{root}/{name}"
                if kind == "create": os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                elif kind == "fill":
                    fd = os.open(path, os.O_WRONLY); os.write(fd, arg); os.close(fd)
                elif kind == "rename": os.rename(path, f"{root}/{arg}")
                elif kind == "unlink": os.unlink(path)
                elif kind == "mkdir": os.mkdir(path)
                if n % 25 == 0:
                    os.fsync(dirfd); j.write(f"{n}\\n"); j.flush(); os.fsync(j.fileno())
            """
        let verify = model + """

            import os, sys
            root, journal = sys.argv[1], sys.argv[2]
            synced = max([int(l) for l in open(journal)] or [0])
            actual = {}
            for d, dirs, files in os.walk(root):
                for x in dirs: actual[os.path.relpath(f"{d}/{x}", root)] = "dir"
                for x in files:
                    with open(f"{d}/{x}", "rb") as f: actual[os.path.relpath(f"{d}/{x}", root)] = f.read()
            state, matches = {}, []
            if state == actual: matches.append(0)
            for n, (kind, name, arg) in enumerate(steps(), 1):
                if kind == "create": state[name] = b""
                elif kind == "fill": state[name] = arg
                elif kind == "rename": state[arg] = state.pop(name)
                elif kind == "unlink": del state[name]
                elif kind == "mkdir": state[name] = "dir"
                if len(state) == len(actual) and state == actual: matches.append(n)
            if synced == 0: print("no fsyncdir returned before the kill"); sys.exit(1)
            print(f"ok: synced {synced}, matches {matches[-3:]}" if any(n >= synced for n in matches) else f"no prefix state matches: synced {synced}, matches {matches[-3:]}, {len(actual)} names")
            """
        let journal = box.root + "/journal"
        for round in 0..<4 {
            try box.mount("demo", round % 2 == 1 ? ["--no-writeback"] : [])
            let root = box.mountpoint + "/round\(round)"
            let worker = try Harness.launch("/usr/bin/python3", ["-c", workload, root, journal])
            try box.killDaemon(during: worker, jitter: 1_500_000)
            try box.mount()
            let r = try Harness.run("/usr/bin/python3", ["-c", verify, root, journal])
            #expect(r.status == 0 && r.stdout.hasPrefix("ok"), "round \(round): \(r.stdout)\(r.stderr)")
            try box.umount()
            let fsck = try box.kmsfs("fsck", "demo")
            #expect(fsck.status == 0, "round \(round): \(fsck.stdout)\(fsck.stderr)")
        }
    }

    @Test("a root mount sets its kernel readahead (default 4096 KiB, --readahead N, 0 keeps the kernel's); a bad value is a usage error")
    func readahead() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        func current() throws -> Int? {
            let line = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8).split(separator: "\n")
                .last { $0.split(separator: " ").count > 4 && $0.split(separator: " ")[4] == Substring(box.mountpoint) }
            let device = try #require(line?.split(separator: " ")[2], "the mount is in mountinfo")
            return Int(try String(contentsOfFile: "/sys/class/bdi/\(device)/read_ahead_kb", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        for (extra, expected) in [([String](), 4096), (["--readahead", "512"], 512), (["--readahead", "0"], 128)] {
            try box.mount("demo", extra)
            var seen = try current()
            for _ in 0..<40 where seen != expected {  // set just after the session's first answer
                usleep(50_000)
                seen = try current()
            }
            #expect(seen == expected, "\(extra)")
            try box.umount()
        }
        let bad = try box.kmsfs("mount", "demo", box.mountpoint, "--readahead", "70000")
        #expect(bad.status == 64 && bad.stderr.contains("--readahead must be between 0 and 65536"), "\(bad.stderr)")
    }

    @Test("git and sqlite3 work on the mount")
    func realTools() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        defer { try? box.umount() }
        let m = box.mountpoint
        let git = try Harness.shell("""
            set -e; cd \(m); git init -q repo; cd repo; for i in $(seq 1 50); do echo line $i > f$i; done
            git add . && git -c user.email=t@t -c user.name=t commit -qm one && git status --porcelain | wc -l
            """)
        #expect(git.status == 0 && git.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "\(git.stderr)")
        let sql = try Harness.shell("""
            sqlite3 \(m)/x.db 'PRAGMA journal_mode=WAL; CREATE TABLE t(a); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<5000) INSERT INTO t SELECT x FROM c;' >/dev/null &&
            sqlite3 \(m)/x.db 'SELECT sum(a) FROM t; PRAGMA integrity_check;'
            """)
        #expect(sql.stdout.contains("12502500") && sql.stdout.contains("ok"), "\(sql.stdout)\(sql.stderr)")
    }

    @Test("kill -9 of the daemon: remount works and every fsync'ed file reads back exactly")
    func killNine() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        let script = """
            import os, sys
            root = sys.argv[1]
            for i in range(20):
                data = bytes([(i * 7 + j) & 255 for j in range(70000 + i * 1000)])
                fd = os.open(f"{root}/synced-{i}", os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, data); os.fsync(fd); os.close(fd)
            fd = os.open(f"{root}/unsynced", os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, b"x" * 100000)
            """
        #expect(try Harness.run("/usr/bin/python3", ["-c", script, box.mountpoint]).status == 0)
        let pid = try #require(box.daemonPID())
        #expect(kill(pid, SIGKILL) == 0)
        usleep(300_000)
        try box.mount()
        defer { try? box.umount() }
        let verify = """
            import sys
            root = sys.argv[1]
            for i in range(20):
                data = bytes([(i * 7 + j) & 255 for j in range(70000 + i * 1000)])
                assert open(f"{root}/synced-{i}", "rb").read() == data, i
            u = open(f"{root}/unsynced", "rb").read()
            assert all(b in (0x78, 0) for b in u), "garbage in unsynced file"
            print("ok")
            """
        let r = try Harness.run("/usr/bin/python3", ["-c", verify, box.mountpoint])
        #expect(r.status == 0 && r.stdout.contains("ok"), "\(r.stderr)")
    }

    /// Crash consistency at random points: a workload of fsync'ed new files and
    /// unsynced churn (overwrites, truncates, renames, unlinks) is killed with
    /// the daemon (kill -9) at a random moment, several times. Each time fsck
    /// finds nothing it cannot repair, and after remount every file whose fsync
    /// returned reads back exactly, and no file holds decrypted garbage.
    @Test("kill -9 at random points of a write/fsync/rename workload: fsync'ed files intact, fsck repairable, no garbage")
    func killNineAtRandomPoints() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let journal = box.root + "/journal"
        _ = FileManager.default.createFile(atPath: journal, contents: nil)
        let workload = """
            import os, random, sys
            root, journal, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
            rng = random.Random(seed)
            j = open(journal, "a")
            n = 0
            while True:
                n += 1
                name = f"synced-{seed}-{n}"
                data = bytes([(n * 13 + k) & 255 for k in range(rng.randrange(1, 90000))])
                fd = os.open(f"{root}/{name}", os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, data); os.fsync(fd); os.close(fd)
                j.write(f"{name} {len(data)} {n}\\n"); j.flush(); os.fsync(j.fileno())
                s = f"{root}/scratch-{rng.randrange(6)}"
                try:
                    op = rng.randrange(4)
                    if op == 0:
                        fd = os.open(s, os.O_CREAT | os.O_WRONLY, 0o644)
                        os.pwrite(fd, b"Z" * rng.randrange(1, 50000), rng.randrange(200000)); os.close(fd)
                    elif op == 1:
                        os.truncate(s, rng.randrange(100000))
                    elif op == 2:
                        os.rename(s, f"{root}/scratch-{rng.randrange(6)}")
                    else:
                        os.unlink(s)
                except FileNotFoundError:
                    pass
            """
        let verify = """
            import os, sys
            root, journal = sys.argv[1], sys.argv[2]
            count = 0
            for line in open(journal):
                parts = line.split()
                if len(parts) != 3:
                    continue
                name, size, n = parts[0], int(parts[1]), int(parts[2])
                data = open(f"{root}/{name}", "rb").read()
                assert data == bytes([(n * 13 + k) & 255 for k in range(size)]), name
                count += 1
            for name in os.listdir(root):
                if name.startswith("scratch-"):
                    assert set(open(f"{root}/{name}", "rb").read()) <= {0, 0x5A}, f"garbage in {name}"
            print(f"ok {count}")
            """
        for round in 0..<4 {
            try box.mount()
            let worker = try Harness.launch("/usr/bin/python3", ["-c", workload, box.mountpoint, journal, String(round + 1)])
            try box.killDaemon(during: worker)
            let fsck = try box.kmsfs("fsck", "demo", "--repair")
            #expect(fsck.status == 0 || fsck.status == 1, "round \(round): fsck left problems: \(fsck.stdout)\(fsck.stderr)")
            try box.mount()
            let r = try Harness.run("/usr/bin/python3", ["-c", verify, box.mountpoint, journal])
            #expect(r.status == 0 && r.stdout.hasPrefix("ok"), "round \(round): \(r.stdout)\(r.stderr)")
            try box.umount()
        }
        let lines = (try? String(contentsOfFile: journal, encoding: .utf8))?.split(separator: "\n").count ?? 0
        #expect(lines > 0, "the workload must have fsync'ed some files")
    }

    /// Fault injection (debug builds' KMSFS_FAULT hook): after four tag or
    /// ciphertext writes, every write to the backing store fails with EIO, as a dying disk would.
    @Test("EIO from the backing store reaches the caller; fsync'ed data survives; the store stays consistent")
    func injectedIOErrors() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        box.env = ["KMSFS_FAULT": "write:5:4"]  // each data write is two: the units' tags, then the units
        try box.mount()
        let script = """
            import errno, os, sys
            root = sys.argv[1]
            fd = os.open(f"{root}/before", os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, b"B" * 10000); os.fsync(fd); os.close(fd)
            try:
                fd = os.open(f"{root}/after", os.O_CREAT | os.O_WRONLY, 0o644)
                for i in range(40):
                    os.write(fd, bytes([65 + i % 26]) * 131072)
                os.fsync(fd)
                os.close(fd)
                print("no error")
            except OSError as e:
                print("errno", errno.errorcode[e.errno])
            print("before", open(f"{root}/before", "rb").read() == b"B" * 10000)
            """
        let r = try Harness.run("/usr/bin/python3", ["-c", script, box.mountpoint])
        #expect(r.stdout.contains("errno EIO"), "the writer must see EIO: \(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("before True"), "\(r.stdout)")
        try box.umount()
        box.env = [:]
        let fsck = try box.kmsfs("fsck", "demo")
        #expect(fsck.status == 0, "\(fsck.stdout)\(fsck.stderr)")
        try box.mount()
        #expect(try box.read("before") == String(repeating: "B", count: 10000))
        try box.umount()
    }

    @Test("a full store gives the writer ENOSPC and keeps fsync'ed data")
    func diskFull() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try FileManager.default.createDirectory(atPath: box.home, withIntermediateDirectories: true)
        #expect(try Harness.run("/bin/mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", box.home]).status == 0)
        defer { _ = try? Harness.run("/bin/umount", ["-l", box.home]) }
        try box.create()
        try box.mount()
        let script = """
            import errno, os, sys
            root = sys.argv[1]
            keep = os.urandom(1 << 20)
            fd = os.open(f"{root}/keep", os.O_CREAT | os.O_WRONLY, 0o644); os.write(fd, keep); os.fsync(fd); os.close(fd)
            fd = os.open(f"{root}/fill", os.O_CREAT | os.O_WRONLY, 0o644)
            got = None
            try:
                for _ in range(100):
                    os.write(fd, b"f" * (1 << 20))
                os.fsync(fd)
            except OSError as e:
                got = e.errno
            try: os.close(fd)
            except OSError as e: got = got or e.errno
            assert got == errno.ENOSPC, f"expected ENOSPC, got {got}"
            os.unlink(f"{root}/fill")
            assert open(f"{root}/keep", "rb").read() == keep
            open(f"{root}/after", "w").write("still works")
            print("ok")
            """
        let r = try Harness.run("/usr/bin/python3", ["-c", script, box.mountpoint])
        #expect(r.status == 0 && r.stdout.contains("ok"), "\(r.stdout)\(r.stderr)")
        try box.umount()
        try box.mount()
        #expect(try box.read("after") == "still works")
        try box.umount()
    }

    @Test("mount.kmsfs helper: mount(8)-style arguments and -o options")
    func mountHelper() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let helper = box.root + "/mount.kmsfs"
        try FileManager.default.createSymbolicLink(atPath: helper, withDestinationPath: Harness.binary)
        let r = try Harness.run(helper, ["demo", box.mountpoint, "-o", "rw,noatime,home=\(box.home),nofail"])
        #expect(r.status == 0, "\(r.stderr)")
        try box.write("via-helper", "ok")
        try box.umount()
        let ro = try Harness.run(helper, ["demo", box.mountpoint, "-o", "ro,home=\(box.home)"])
        #expect(ro.status == 0, "\(ro.stderr)")
        #expect(try box.read("via-helper") == "ok")
        #expect(throws: (any Error).self) { try box.write("denied", "x") }
        try box.umount()
        let bad = try Harness.run(helper, ["demo", box.mountpoint, "-o", "bogus,home=\(box.home)"])
        #expect(bad.status == 64 && bad.stderr.contains("bogus"))
        // Through mount(8) itself: InstallTests, with the installed helpers.
    }
}

import Foundation
import Testing

/// Snapshots, export and rehydration through real mounts, with the local key
/// (the KMS variants are in SnapshotKMSTests).
@Suite(.serialized) struct SnapshotTests {
    static let scripts = Harness.packageRoot + "/Tests/IntegrationTests/Scripts"



    func checkTree(_ path: String) throws -> (ok: Bool, summary: [String: Any], error: String) {
        let r = try Harness.run("/usr/bin/python3", [Self.scripts + "/snapshot_writer.py", "check", path])
        return (r.status == 0, Harness.json(r.stdout), r.stderr)
    }

    @Test func snapshotUnderConcurrentWriterIsOnePointInTime() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        let stop = box.root + "/stop"
        let output = box.root + "/writer.out"
        let writer = try Harness.launch("/usr/bin/python3", [Self.scripts + "/snapshot_writer.py", "write", box.mountpoint, stop], output: output)
        defer { if writer.isRunning { _ = FileManager.default.createFile(atPath: stop, contents: nil); writer.waitUntilExit() } }
        usleep(1_500_000)

        let created = try box.kmsfs("snapshot", "create", "demo", "busy")
        try #require(created.status == 0, "snapshot create while writing: \(created.stderr)")
        let view = try box.directory("view")
        try box.mountSnapshot("busy", at: view)
        let first = try checkTree(view)
        #expect(first.ok, "the snapshot is not one point in time: \(first.error)")
        #expect((first.summary["log0"] as? Int ?? 0) > 5, "the writer had written before the snapshot: \(first.summary)")

        // The writer goes on: appends, ring rewrites, deletes and truncations after the snapshot.
        usleep(1_500_000)
        _ = FileManager.default.createFile(atPath: stop, contents: nil)
        writer.waitUntilExit()
        #expect(writer.terminationStatus == 0)
        let final = Harness.json(String(decoding: FileManager.default.contents(atPath: output) ?? Data(), as: UTF8.self))
        #expect((final["log0"] as? Int ?? 0) > (first.summary["log0"] as? Int ?? 0), "writes went on after the snapshot: \(final)")
        let live = try checkTree(box.mountpoint)
        #expect(live.ok, "the live tree: \(live.error)")

        let second = try checkTree(view)
        #expect(second.ok, "\(second.error)")
        #expect(NSDictionary(dictionary: second.summary) == NSDictionary(dictionary: first.summary), "later writes changed the snapshot")
        // And after a remount of the view (nothing cached in the kernel).
        try box.umount(view)
        try box.mountSnapshot("busy", at: view)
        let third = try checkTree(view)
        #expect(NSDictionary(dictionary: third.summary) == NSDictionary(dictionary: first.summary), "the snapshot changed across a remount")
        try box.umount(view)
        try box.umount()
    }

    /// kill -9 of the mount daemon while 4 KiB overwrites of units a snapshot
    /// holds are held back for one delta sync per batch (no fsync by the
    /// writer): the snapshot reads exactly as taken, and every live unit reads
    /// as its old content or one of the writes, never EIO.
    @Test func heldBackOverwritesSurviveDaemonKill() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        // Write-through (no kernel writeback cache): each pwrite reaches the daemon at once, as held-back units.
        try box.mount("demo", ["--no-writeback"])
        let units = 1024
        // Unit u of the original: 4096 bytes of a seeded stream, so it can be recomputed after the crash.
        let layout = """
            import random, sys
            def original(u): return random.Random(u).randbytes(4096)
            def written(u, n): return (b"W" + u.to_bytes(4, "little") + n.to_bytes(4, "little")) * 455 + b"\\0"
            """
        let make = layout + "\n" + """
            with open(sys.argv[1], "wb") as f:
                for u in range(\(units)): f.write(original(u))
            """
        #expect(try Harness.run("/usr/bin/python3", ["-c", make, box.mountpoint + "/f"]).status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "before").status == 0)
        let overwrite = layout + "\n" + """
            import os
            fd = os.open(sys.argv[1], os.O_RDWR); rng = random.Random(int(sys.argv[2])); n = 0
            while True:
                u = rng.randrange(\(units)); n += 1
                try: os.pwrite(fd, written(u, n), u * 4096)
                except OSError: break
            """
        let check = layout + "\n" + """
            data = open(sys.argv[1], "rb").read()
            assert len(data) == \(units) * 4096, len(data)
            changed = 0
            for u in range(\(units)):
                unit = data[u * 4096:(u + 1) * 4096]
                if unit == original(u): continue
                n = int.from_bytes(unit[5:9], "little")
                assert unit == written(u, n), f"unit {u} is neither old nor new"
                changed += 1
            print(changed)
            """
        let view = try box.directory("view")
        for round in 0..<2 {
            let worker = try Harness.launch("/usr/bin/python3", ["-c", overwrite, box.mountpoint + "/f", String(round)])
            defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
            try box.killDaemon(during: worker, jitter: 600_000)
            try box.mountSnapshot("before", at: view)
            let snapshot = try Harness.run("/usr/bin/python3", ["-c", check, view + "/f"])
            #expect(snapshot.status == 0 && snapshot.stdout.hasPrefix("0"), "round \(round): the snapshot changed: \(snapshot.stdout)\(snapshot.stderr)")
            try box.umount(view)
            try box.mount("demo", ["--no-writeback"])
            let live = try Harness.run("/usr/bin/python3", ["-c", check, box.mountpoint + "/f"])
            #expect(live.status == 0 && (Int(live.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0,
                    "round \(round): live units after the crash (some must have changed): \(live.stdout)\(live.stderr.suffix(400))")
        }
        try box.umount()
    }

    /// kill -9 of the mount daemon while a writer rewrites, truncates and
    /// deletes files a snapshot holds, three times: the snapshot reads the same
    /// every time, and fsck of the live filesystem is clean or repairable.
    @Test func snapshotSurvivesDaemonKilledMidWrite() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        #expect(try Harness.shell("cd \(box.mountpoint) && for i in 0 1 2 3 4 5; do head -c $((300000 * (i + 1))) /dev/urandom > f$i; done").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "before").status == 0)
        let view = try box.directory("view")
        try box.mountSnapshot("before", at: view)
        let sums = try Harness.shell("cd \(view) && sha256sum f* | sort").stdout
        try box.umount(view)
        let churn = """
            import os, random, sys
            root = sys.argv[1]; rng = random.Random(int(sys.argv[2]))
            while True:
                name = f"{root}/f{rng.randrange(6)}"
                try:
                    op = rng.randrange(4)
                    if op == 0:
                        with open(name, "r+b") as f:
                            f.seek(rng.randrange(2000000)); f.write(os.urandom(rng.randrange(1, 200000))); f.flush(); os.fsync(f.fileno())
                    elif op == 1: os.truncate(name, rng.randrange(3))
                    elif op == 2: os.unlink(name)
                    else:
                        with open(name, "ab") as f: f.write(os.urandom(50000))
                except OSError as e:
                    if e.errno == 107:  # ENOTCONN: the daemon is gone
                        break
            """
        for round in 0..<3 {
            let worker = try Harness.launch("/usr/bin/python3", ["-c", churn, box.mountpoint, String(round)])
            defer { if worker.isRunning { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() } }
            try box.killDaemon(during: worker, jitter: 800_000)
            let fsck = try box.kmsfs("fsck", "demo", "--repair")
            #expect(fsck.status == 0 || fsck.status == 1, "round \(round): \(fsck.stdout)\(fsck.stderr)")
            try box.mountSnapshot("before", at: view)
            let after = try Harness.shell("cd \(view) && sha256sum f* | sort").stdout
            #expect(after == sums, "round \(round): the snapshot changed after a crash")
            try box.umount(view)
            try box.mount()
            // Put the files back for the next round (new file ids; the snapshot keeps the old ones).
            #expect(try Harness.shell("cd \(box.mountpoint) && for i in 0 1 2 3 4 5; do [ -e f$i ] || head -c 100000 /dev/urandom > f$i; done").status == 0)
        }
        try box.umount()
    }

    @Test func deleteKeepsOlderSnapshotsAndRefusesMountedOnes() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        let big = box.mountpoint + "/big"
        #expect(try Harness.shell("head -c 8000000 /dev/urandom > \(big) && echo one > \(box.mountpoint)/a").status == 0)
        let before = try Harness.shell("sha256sum < \(big)").stdout
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        #expect(try Harness.shell("dd if=/dev/zero of=\(big) bs=4096 seek=100 count=50 conv=notrunc status=none && echo two > \(box.mountpoint)/a").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s2").status == 0)
        #expect(try Harness.shell("dd if=/dev/zero of=\(big) bs=4096 seek=1000 count=50 conv=notrunc status=none && : > \(big) && rm \(box.mountpoint)/a").status == 0)
        let duplicate = try box.kmsfs("snapshot", "create", "demo", "s1")
        #expect(duplicate.status == 64 && duplicate.stderr.contains("already exists"), "\(duplicate.stderr)")

        let view = try box.directory("view")
        try box.mountSnapshot("s1", at: view)
        let refused = try box.kmsfs("snapshot", "delete", "demo", "s1")
        #expect(refused.status == 71 && refused.stderr.contains("is in use"), "\(refused.stderr)")
        // Deleting s2 merges what s1 needs from it; s1 is mounted, so that is refused too.
        #expect(try box.kmsfs("snapshot", "delete", "demo", "s2").status == 71)
        try box.umount(view)
        let deleted = try box.kmsfs("snapshot", "delete", "demo", "s2")
        #expect(deleted.status == 0, "delete s2 while the filesystem is mounted: \(deleted.stderr)")
        try box.mountSnapshot("s1", at: view)
        #expect(try Harness.shell("sha256sum < \(view)/big").stdout == before, "s1's big file survives the delete of s2")
        #expect(try String(contentsOfFile: view + "/a", encoding: .utf8) == "one\n")
        try box.umount(view)

        let list = try box.kmsfs("snapshot", "list", "demo", "--json")
        let rows = (try? JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]) ?? []
        #expect(rows.map { $0["name"] as? String } == ["s1"])
        #expect(try box.kmsfs("snapshot", "delete", "demo", "s1").status == 0)
        let missing = try box.kmsfs("snapshot", "delete", "demo", "s1")
        #expect(missing.status == 66 && missing.stderr.contains("no snapshot named 's1'"))
        try box.umount()
        // Unmounted: create and delete work directly on the store.
        #expect(try box.kmsfs("snapshot", "create", "demo", "cold").status == 0)
        #expect(try box.kmsfs("snapshot", "delete", "demo", "cold").status == 0)
        let left = (try? FileManager.default.contentsOfDirectory(atPath: box.store + "/snapshots")) ?? []
        #expect(left == ["catalog"], "no snapshot data left behind: \(left)")
    }

    /// A tree with the things a rehydration must keep: sparse and large
    /// files, hard links, symlinks, xattrs, modes, empty files and directories.
    func populate(_ root: String) throws {
        let script = """
            set -e
            cd \(root)
            mkdir -p src/deep/er empty
            cp -r \(Harness.packageRoot)/Sources/MetaStore src/
            head -c 3000000 /dev/urandom > random.bin
            truncate -s 50M sparse.img
            printf 'in the middle' | dd of=sparse.img bs=1 seek=20000000 conv=notrunc status=none
            : > empty.txt
            echo linked > src/deep/er/file
            ln src/deep/er/file hardlink
            ln -s src/deep/er/file symlink
            setfattr -n user.note -v "kept" random.bin
            chmod 0640 random.bin
            """
        let r = try Harness.shell(script)
        #expect(r.status == 0, "populate: \(r.stderr)")
    }

    /// `diff -r` plus what diff does not see: modes, link counts, xattrs, symlink targets.
    func sameTree(_ a: String, _ b: String) throws -> String {
        let script = """
            diff -r --no-dereference \(a) \(b) || exit 1
            cd \(a) && find . -printf '%p %m %n %s %l\\n' | sort > /tmp/kmsfs-tree-a.$$
            cd \(b) && find . -printf '%p %m %n %s %l\\n' | sort > /tmp/kmsfs-tree-b.$$
            diff /tmp/kmsfs-tree-a.$$ /tmp/kmsfs-tree-b.$$ || exit 2
            rm -f /tmp/kmsfs-tree-?.$$
            [ "$(getfattr --only-values -n user.note \(a)/random.bin)" = "$(getfattr --only-values -n user.note \(b)/random.bin)" ] || exit 3
            """
        let r = try Harness.shell(script)
        return r.status == 0 ? "" : "trees differ (\(r.status)): \(r.stdout.prefix(800)) \(r.stderr.prefix(300))"
    }

    @Test func exportImportRoundTripIsByteIdenticalAndIdempotent() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        try populate(box.mountpoint)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        try box.write("after-the-snapshot", "not in the bundle\n")
        try box.umount()

        let bundle = box.root + "/bundle"
        let export = try box.kmsfs("snapshot", "export", "demo", "s1", bundle, "--json")
        try #require(export.status == 0, "export: \(export.stderr)")
        let summary = Harness.json(export.stdout)
        let chunks = summary["chunks"] as? Int ?? 0
        let metadataChunks = ((summary["metadataBytes"] as? Int ?? 0) + (1 << 20) - 1) >> 20
        #expect(chunks > 0 && metadataChunks > 0 && summary["uploadedChunks"] as? Int == chunks + metadataChunks, "\(summary)")
        #expect((summary["bytes"] as? Int ?? 0) < 12_000_000, "the 50 MB sparse file's holes are not exported: \(summary)")
        #expect(export.stderr.isEmpty, "no progress output when stderr is not a terminal: \(export.stderr)")
        // The bundle holds ciphertext only: a plaintext marker of the tree is nowhere in it.
        #expect(try Harness.shell("grep -r -l 'in the middle' \(bundle)").status == 1)

        // Again: nothing to send (idempotent). Then two chunks lost: exactly those are resent (resumable).
        let again = Harness.json(try box.kmsfs("snapshot", "export", "demo", "s1", bundle, "--json").stdout)
        #expect(again["uploadedChunks"] as? Int == 0 && again["chunks"] as? Int == chunks, "\(again)")
        // Progress: none when stderr is not a terminal, a line with rate and chunk count when it is (script(1) gives a pty).
        let quiet = try box.kmsfs("snapshot", "verify", bundle)
        #expect(quiet.status == 0 && quiet.stderr.isEmpty && quiet.stdout.contains("is intact"), "\(quiet.stderr)")
        let tty = try Harness.run("/usr/bin/script", ["-qec", "\(Harness.binary) snapshot verify \(bundle)", "/dev/null"])
        #expect(tty.status == 0 && tty.stdout.contains("verify s1: ") && tty.stdout.contains("chunks") && tty.stdout.contains("/s"), "progress on a terminal: \(tty.stdout.suffix(300))")
        #expect(try Harness.shell("find \(bundle)/chunks -type f | sort | head -2 | xargs rm").status == 0)
        let resumed = Harness.json(try box.kmsfs("snapshot", "export", "demo", "s1", bundle, "--json").stdout)
        #expect(resumed["uploadedChunks"] as? Int == 2, "\(resumed)")

        let verify = try box.kmsfs("snapshot", "verify", bundle, "--json")
        #expect(verify.status == 0 && Harness.json(verify.stdout)["ok"] as? Bool == true, "verify: \(verify.stderr)")
        let imported = try box.kmsfs("snapshot", "import", bundle, "copy", "--json")
        try #require(imported.status == 0, "import: \(imported.stderr)")
        #expect(Harness.json(imported.stdout)["chunks"] as? Int == chunks)

        let view = try box.directory("view"), copy = try box.directory("copy")
        try box.mountSnapshot("s1", at: view)
        #expect(try box.kmsfs("mount", "copy", copy).status == 0)
        #expect(try sameTree(view, copy) == "")
        #expect(!FileManager.default.fileExists(atPath: copy + "/after-the-snapshot"))
        // The rehydrated filesystem is a normal one: writable, and fsck-clean after unmount.
        #expect(try Harness.shell("echo new > \(copy)/new && cat \(copy)/new").stdout == "new\n")
        // New files of the copy take inode numbers (file ids, XTS tweaks) far from the source's next ones.
        let inode = UInt64(try Harness.shell("stat -c %i \(copy)/new").stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(inode >= 1 << 32, "new inode number in the copy: \(inode)")
        try box.umount(copy)
        try box.umount(view)
        let fsck = try box.kmsfs("fsck", "copy")
        #expect(fsck.status == 0, "fsck of the rehydrated filesystem: \(fsck.stdout) \(fsck.stderr)")
        let exists = try box.kmsfs("snapshot", "import", bundle, "copy")
        #expect(exists.status == 64, "import over an existing filesystem: \(exists.stderr)")
    }

    @Test func singleFileTarBundle() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        try populate(box.mountpoint)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        try box.write("later", "after s1\n")
        #expect(try box.kmsfs("snapshot", "create", "demo", "s2").status == 0)
        let tar = box.root + "/demo.tar"
        let first = Harness.json(try box.kmsfs("snapshot", "export", "demo", "s1", tar, "--json").stdout)
        #expect((first["uploadedChunks"] as? Int ?? 0) > 0, "\(first)")
        // Into the same file: only what s2 adds is appended, and it stays a valid tar archive.
        let size1 = (try FileManager.default.attributesOfItem(atPath: tar)[.size] as? Int) ?? 0
        let second = Harness.json(try box.kmsfs("snapshot", "export", "demo", "s2", tar, "--json").stdout)
        #expect((second["uploadedChunks"] as? Int ?? -1) <= 2, "s2 differs by one small file and the metadata: \(second)")
        let size2 = (try FileManager.default.attributesOfItem(atPath: tar)[.size] as? Int) ?? 0
        #expect(size2 - size1 < 512 << 10, "appended \(size2 - size1) bytes")
        let listing = try Harness.run("/bin/tar", ["tf", tar])
        #expect(listing.status == 0 && listing.stdout.contains("manifests/s1.jsonl") && listing.stdout.contains("manifests/s2.jsonl"), "tar tf: \(listing.stderr)")
        // tar xf gives the directory layout, which imports too.
        let unpacked = try box.directory("unpacked")
        #expect(try Harness.run("/bin/tar", ["xf", tar, "-C", unpacked]).status == 0)
        #expect(try box.kmsfs("snapshot", "verify", unpacked, "--snapshot", "s2").status == 0)
        #expect(try box.kmsfs("snapshot", "verify", tar, "--snapshot", "s1").status == 0)
        let imported = try box.kmsfs("snapshot", "import", tar, "fromtar", "--snapshot", "s2")
        try #require(imported.status == 0, "import from a tar bundle: \(imported.stderr)")
        let copy = try box.directory("copy")
        #expect(try box.kmsfs("mount", "fromtar", copy).status == 0)
        #expect(try sameTree(box.mountpoint, copy) == "")
        try box.umount(copy)
        try box.umount()
        // A tar cut short in the middle of a member: that member is dropped, the rest still reads
        // (an existing regular file is a single-file bundle whatever its name).
        let cut = box.root + "/cut.bundle"
        #expect(try Harness.shell("head -c \(size1 + 1000) \(tar) > \(cut)").status == 0)
        #expect(try box.kmsfs("snapshot", "verify", cut, "--snapshot", "s1").status == 0)
        let missing = try box.kmsfs("snapshot", "verify", cut, "--snapshot", "s2")
        #expect(missing.status == 66, "s2's manifest was in the cut part: \(missing.stderr)")
    }

    @Test func incrementalExportSendsAboutTheChangedBytes() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        let size = 64 << 20
        #expect(try Harness.shell("head -c \(size) /dev/urandom > \(box.mountpoint)/big && head -c 16777216 /dev/urandom > \(box.mountpoint)/other").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let bundle = box.root + "/bundle"
        let full = Harness.json(try box.kmsfs("snapshot", "export", "demo", "s1", bundle, "--json").stdout)
        #expect((full["uploadedBytes"] as? Int ?? 0) >= size + 16 << 20)
        // The destination loses one chunk of the unchanged file: the incremental export must put it back.
        let lose = #"import json,os,sys; lines=[json.loads(l) for l in open(sys.argv[1])]; "#
            + #"i=next(n for n,l in enumerate(lines) if l.get("size")==16777216); os.remove(sys.argv[2]+"/chunks/"+lines[i+1]["c"][2][:2]+"/"+lines[i+1]["c"][2])"#
        #expect(try Harness.run("/usr/bin/python3", ["-c", lose, bundle + "/manifests/s1.jsonl", bundle]).status == 0)
        // Change 1% of the file (655,360 bytes at an unaligned offset).
        let changed = size / 100
        #expect(try Harness.run("/usr/bin/python3", ["-c", "import os, sys; f = os.open(sys.argv[1], os.O_WRONLY); os.pwrite(f, os.urandom(\(changed)), 10000123)",
                                                      box.mountpoint + "/big"]).status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s2").status == 0)
        let incremental = try box.kmsfs("snapshot", "export", "demo", "s2", bundle, "--base", "s1", "--json")
        try #require(incremental.status == 0, "incremental export: \(incremental.stderr)")
        let summary = Harness.json(incremental.stdout)
        let sent = summary["uploadedBytes"] as? Int ?? -1
        // 1% of the data, rounded out to the 1 MiB chunks it touches (at most 2 MiB here), plus the one
        // lost chunk, plus the metadata image (a few KiB; it changed with the file's mtime).
        let metadata = summary["metadataBytes"] as? Int ?? 0
        #expect(metadata < 256 << 10)
        #expect(sent >= changed + (1 << 20) && sent <= (3 << 20) + metadata, "incremental export sent \(sent) bytes for a \(changed)-byte change: \(summary)")
        #expect(Double(sent) / Double(size + 16 << 20) < 0.04)
        // The unchanged file was not even read: its chunk list came from s1's manifest (and the lost chunk from the view).
        #expect(summary["reusedFiles"] as? Int == 1, "\(summary)")
        #expect((summary["readBytes"] as? Int ?? 0) <= size + (1 << 20), "\(summary)")
        #expect(try box.kmsfs("snapshot", "verify", bundle, "--snapshot", "s2").status == 0)
        // Streaming: exporting the 64 MiB file to a new place holds far less than 64 MiB
        // (peak RSS of the whole process, Foundation included, from getrusage).
        let measure = "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
            + "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        let rss = try Harness.run("/usr/bin/python3", ["-c", measure, Harness.binary, "snapshot", "export", "demo", "s2", box.root + "/fresh", "--home", box.home])
        let fields = rss.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        // Under a sanitizer the shadow memory makes RSS meaningless; the exit status still counts.
        let limit = ProcessInfo.processInfo.environment["KMSFS_SANITIZER"] == nil ? 56 * 1024 : Int.max
        #expect(fields.count == 2 && fields[0] == 0 && fields[1] < limit, "export of a 64 MiB file: exit and peak RSS in KiB: \(rss.stdout) \(rss.stderr)")
        // With 64 KiB chunks the rounding is small: about 1% of the bytes go out.
        let fine = box.root + "/fine"
        #expect(try box.kmsfs("snapshot", "export", "demo", "s1", fine, "--chunk-size", "64K").status == 0)
        let fineSent = Harness.json(try box.kmsfs("snapshot", "export", "demo", "s2", fine, "--base", "s1", "--chunk-size", "64K", "--json").stdout)["uploadedBytes"] as? Int ?? -1
        let total = size + 16 << 20
        #expect(fineSent >= changed && Double(fineSent) / Double(total) < 0.012, "64 KiB chunks: sent \(fineSent) of \(total) bytes for a \(changed)-byte change")
        let wrongBase = try box.kmsfs("snapshot", "export", "demo", "s2", bundle, "--base", "nope")
        #expect(wrongBase.status == 66 && wrongBase.stderr.contains("no export of snapshot 'nope'"), "\(wrongBase.stderr)")

        // Ctrl-C during an import: exit 130, and neither the filesystem nor the staging directory remains.
        let interrupted = try Harness.launch(Harness.binary, ["snapshot", "import", bundle, "cut", "--snapshot", "s2", "--home", box.home])
        // Signal as soon as the staging directory appears: the import is then in its chunk loop.
        for _ in 0..<5000 where !FileManager.default.fileExists(atPath: box.home + "/.importing-cut") { usleep(1000) }
        kill(interrupted.processIdentifier, SIGINT)
        interrupted.waitUntilExit()
        #expect(interrupted.terminationStatus == 130, "import after SIGINT: \(interrupted.terminationStatus)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/filesystems/cut"))
        #expect(!FileManager.default.fileExists(atPath: box.home + "/.importing-cut"))

        // The incremental bundle rehydrates to s2, not s1.
        #expect(try box.kmsfs("snapshot", "import", bundle, "two", "--snapshot", "s2").status == 0)
        let ambiguous = try box.kmsfs("snapshot", "import", bundle, "three")
        #expect(ambiguous.status == 64 && ambiguous.stderr.contains("--snapshot"), "\(ambiguous.stderr)")
        let copy = try box.directory("copy")
        #expect(try box.kmsfs("mount", "two", copy).status == 0)
        #expect(try Harness.shell("cmp \(copy)/big \(box.mountpoint)/big && cmp \(copy)/other \(box.mountpoint)/other").status == 0)
        try box.umount(copy)
        try box.umount()
    }

    @Test func tamperedBundlesAreRefusedAndLeaveNothing() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        try box.create("other")
        try box.mount()
        try populate(box.mountpoint)
        try box.umount()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "other", "o1").status == 0)
        let good = box.root + "/good", foreign = box.root + "/foreign"
        #expect(try box.kmsfs("snapshot", "export", "demo", "s1", good).status == 0)
        #expect(try box.kmsfs("snapshot", "export", "other", "o1", foreign).status == 0)
        let manifest = "manifests/s1.jsonl"

        func tampered(_ name: String, _ script: String) throws -> String {
            let copy = box.root + "/" + name
            let r = try Harness.shell("cp -a \(good) \(copy) && cd \(copy) && \(script)")
            #expect(r.status == 0, "tampering \(name): \(r.stderr)")
            return copy
        }
        // A byte flipped inside a chunk.
        let flipped = try tampered("flipped", """
            f=$(find chunks -type f | sort | head -1); printf '\\x5a' | dd of=$f bs=1 seek=100 conv=notrunc status=none
            """)
        // A chunk missing.
        let missing = try tampered("missing", "rm $(find chunks -type f | sort | tail -1)")
        // A manifest edited: a file's size changed.
        let edited = try tampered("edited", #"sed -i '0,/"size":[0-9]*/s//"size":1/' \#(manifest)"#)
        // The manifest cut short.
        let truncated = try tampered("truncated", "head -n -1 \(manifest) > m && mv m \(manifest)")
        // The wrapped key of another filesystem, with the manifest's hash line recomputed (a careful forger).
        let forged = try tampered("forged", """
            python3 - <<'EOF'
            import hashlib, json
            other = json.loads(open("\(foreign)/manifests/o1.jsonl").readline())
            lines = open("\(manifest)").read().splitlines(True)
            head = json.loads(lines[0]); head["superblock"] = other["superblock"]
            lines[0] = json.dumps(head, sort_keys=True, separators=(",", ":")) + "\\n"
            end = json.loads(lines[-1]); end["sha256"] = hashlib.sha256("".join(lines[:-1]).encode()).hexdigest()
            lines[-1] = json.dumps(end, sort_keys=True, separators=(",", ":")) + "\\n"
            open("\(manifest)", "w").write("".join(lines))
            EOF
            """)
        let cases: [(String, String, Int32, String)] = [
            ("flipped", flipped, 65, "does not match its SHA-256"),
            ("missing", missing, 66, "is missing"),
            ("edited", edited, 65, "was modified"),
            ("truncated", truncated, 65, "truncated"),
            ("forged", forged, 77, "wrong wrapped key"),
        ]
        for (name, bundle, code, message) in cases {
            let r = try box.kmsfs("snapshot", "import", bundle, "victim")
            #expect(r.status == code, "\(name): exit \(r.status): \(r.stderr)")
            #expect(r.stderr.contains(message), "\(name): \(r.stderr)")
            #expect(r.stderr.split(separator: "\n").count <= 2, "\(name): one line (and a hint at most): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: box.home + "/filesystems/victim"), "\(name): a filesystem was created")
            #expect(!FileManager.default.fileExists(atPath: box.home + "/.importing-victim"), "\(name): staging left behind")
            if name != "forged" {
                #expect(try box.kmsfs("snapshot", "verify", bundle).status == code, "verify \(name)")
            }
        }
        // A key the KMS does not have: a bundle exported from another home (another local key).
        let stranger = try Sandbox()
        let r = try stranger.kmsfs("snapshot", "import", good, "victim")
        #expect(r.status == 78 && r.stderr.contains("local key file of the home it came from") && r.stderr.contains("snapshot rewrap"),
                "import into a home without the key: \(r.status) \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stranger.home + "/filesystems/victim"))
        // The intact bundle still imports.
        #expect(try box.kmsfs("snapshot", "import", good, "victim").status == 0)
    }
}

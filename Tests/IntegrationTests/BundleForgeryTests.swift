import Foundation
import Testing

/// Runs `command` as the unprivileged user nobody (runuser), for attacks
/// that a local user, not root, would make.
func asNobody(_ command: String) throws -> Harness.Result {
    try Harness.run("/usr/sbin/runuser", ["-u", "nobody", "--", "/bin/sh", "-c", command])
}

/// Bundles forged by someone who can write the bundle but has no key: the
/// metadata image is rebuilt with SQL of the attacker's choice and every
/// chunk name and the manifest hash are recomputed, so keyless verification
/// passes. Import must still refuse what kmsfs never writes, and a forged
/// setuid-root file must not give anyone root.
@Suite(.serialized) struct BundleForgeryTests {
    let box: Sandbox
    let bundle: String

    init() throws {
        box = try Sandbox()
        bundle = box.root + "/bundle"
    }

    /// A filesystem with a root-owned copy of /usr/bin/id, snapshotted and exported to `bundle`.
    func exportDemo(integrity: Bool = true) throws {
        try box.exportDemo(to: bundle, files: ["note": "hi\n"], integrity: integrity) { mnt throws in
            #expect(try Harness.shell("cp /usr/bin/id \(mnt)/id && chmod 0755 \(mnt)/id").status == 0)
        }
    }

    /// A copy of the bundle whose metadata image ran `sql`, with every hash recomputed.
    func forged(_ name: String, _ sql: String...) throws -> String {
        let copy = box.root + "/" + name
        let r = try Harness.run("/bin/cp", ["-a", bundle, copy])
        #expect(r.status == 0)
        let f = try Harness.run("/usr/bin/python3", [Harness.packageRoot + "/Tests/IntegrationTests/Scripts/forge_bundle.py", copy, "s1"] + sql)
        #expect(f.status == 0, "forging: \(f.stderr)")
        #expect(try box.kmsfs("snapshot", "verify", copy).status == 0, "the forgery is consistent for a keyless check")
        return copy
    }

    /// A copy of the bundle whose data chunks `forge_bundle.py` changed (`arguments`), manifest hash recomputed.
    func forgedData(_ name: String, _ snapshot: String, _ arguments: String...) throws -> String {
        let copy = box.root + "/" + name
        #expect(try Harness.run("/bin/cp", ["-a", bundle, copy]).status == 0)
        let f = try Harness.run("/usr/bin/python3", [Harness.packageRoot + "/Tests/IntegrationTests/Scripts/forge_bundle.py", copy, snapshot] + arguments)
        #expect(f.status == 0, "forging: \(f.stderr)")
        #expect(try box.kmsfs("snapshot", "verify", copy, "--snapshot", snapshot).status == 0, "the forgery is consistent for a keyless check")
        return copy
    }

    /// The file id (16 hex digits) of the one file with data chunks in `snapshot`'s manifest (a small file is inline, in the image).
    func fileWithChunks(in snapshot: String) throws -> String {
        let lines = try String(contentsOfFile: bundle + "/manifests/\(snapshot).jsonl", encoding: .utf8).split(separator: "\n")
        let files = lines.map { Harness.json(String($0)) }.compactMap { $0["f"] as? String }
        try #require(files.count == 1, "files with chunks in \(snapshot): \(files)")
        return files[0]
    }

    func expectRefused(_ forgery: String, _ message: String, snapshot: [String] = []) throws {
        let r = try box.kmsfs(["snapshot", "import", forgery, "victim"] + snapshot)
        #expect(r.status == 65, "exit \(r.status): \(r.stderr)")
        #expect(r.stderr.contains(message), "\(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count <= 2, "one line and a hint at most: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/filesystems/victim"), "a filesystem was created")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/.importing-victim"), "staging left behind")
    }

    /// Without integrity (schema 1): the checks that hold for any meta.db.
    @Test func triggersAndAPinnedInodeCounterAreRefused() throws {
        guard Harness.fuseAvailable() else { return }
        try exportDemo(integrity: false)
        // The review's attack: one trigger pins next_ino (tweak reuse between source and copy),
        // one makes every new file world-writable.
        let triggers = try forged("triggers", """
            CREATE TRIGGER pin AFTER UPDATE ON meta BEGIN UPDATE meta SET value = 2 WHERE key = 'next_ino'; END;
            CREATE TRIGGER world AFTER INSERT ON inodes BEGIN UPDATE inodes SET mode = mode | 438 WHERE ino = new.ino; END;
            """)
        try expectRefused(triggers, "does not have kmsfs's schema")
        let pinned = try forged("pinned", "UPDATE meta SET value = 2 WHERE key = 'next_ino'")
        try expectRefused(pinned, "not above its highest inode")
        let impossible = try forged("impossible", "UPDATE inodes SET size = -1 WHERE ino = (SELECT max(ino) FROM inodes)")
        try expectRefused(impossible, "rows kmsfs never writes")
        #expect(try box.kmsfs("snapshot", "import", bundle, "victim").status == 0, "the genuine bundle still imports")
    }

    /// With integrity: the same forgeries, and rows with valid values, are refused
    /// because the counters and sealed rows do not authenticate.
    @Test func forgedRowsOfAnIntegrityBundleAreRefused() throws {
        guard Harness.fuseAvailable() else { return }
        try exportDemo()
        let triggers = try forged("triggers", "CREATE TRIGGER world AFTER INSERT ON inodes BEGIN UPDATE inodes SET mode = mode | 438 WHERE ino = new.ino; END;")
        try expectRefused(triggers, "does not have kmsfs's schema")
        try expectRefused(try forged("pinned", "UPDATE meta SET value = 2 WHERE key = 'next_ino'"), "counters")
        try expectRefused(try forged("setuid", "UPDATE inodes SET mode = 35309, uid = 0 WHERE mode = 32768"), "tampered")
        // Rows moved or swapped change the set of rows: the row root no longer matches.
        let resealed = "rows are not the ones its counters sealed"
        try expectRefused(try forged("moved", "UPDATE inodes SET sealed = (SELECT sealed FROM inodes WHERE ino = 1) WHERE ino = (SELECT max(ino) FROM inodes)"), resealed)
        try expectRefused(try forged("swapped", """
            CREATE TEMP TABLE s AS SELECT id, ino FROM entries WHERE parent = 1 ORDER BY id LIMIT 2;
            UPDATE entries SET ino = (SELECT ino FROM s WHERE s.id != entries.id) WHERE id IN (SELECT id FROM s);
            """), resealed)
        // Rows withheld: a file's name and inode deleted (an import must not "repair" around them).
        try expectRefused(try forged("withheld", "DELETE FROM entries WHERE ino = (SELECT max(ino) FROM inodes); DELETE FROM inodes WHERE ino = (SELECT max(ino) FROM inodes)"), resealed)
        try expectRefused(try forged("unnamed", "DELETE FROM entries WHERE ino = (SELECT max(ino) FROM inodes)"), resealed)
        #expect(try box.kmsfs("snapshot", "import", bundle, "victim").status == 0, "the genuine bundle still imports")
    }

    /// A data chunk rewritten, or put back from an older export of the same
    /// file (its units carry genuine tags), with every hash recomputed: a
    /// keyless verify passes, but import and `verify --deep` recompute the
    /// unit tags and the file's content digest and refuse (65), leaving nothing.
    @Test func forgedOrReplayedDataChunksAreRefusedByImportAndDeepVerify() throws {
        guard Harness.fuseAvailable() else { return }
        try exportDemo()
        let deep = try box.kmsfs("snapshot", "verify", bundle, "--deep")
        #expect(deep.status == 0 && deep.stdout.contains("the data of all 2 files matches its sealed content digests"), "\(deep.stdout)\(deep.stderr)")
        // A second snapshot after the start of the copy of id changed (same size), exported beside the first.
        try box.mount()
        #expect(try Harness.shell("head -c 100 /dev/urandom | dd of=\(box.mountpoint)/id conv=notrunc status=none").status == 0)
        try box.umount()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s2").status == 0)
        #expect(try box.kmsfs("snapshot", "export", "demo", "s2", bundle, "--base", "s1").status == 0)
        let id = try fileWithChunks(in: "s2")  // the note is inline: in the image

        let flipped = try forgedData("flipped", "s2", "--flip-data", id)
        try expectRefused(flipped, "not what its snapshot held", snapshot: ["--snapshot", "s2"])
        let replayed = try forgedData("replayed", "s2", "--data-from", "s1", id)
        try expectRefused(replayed, "not what its snapshot held", snapshot: ["--snapshot", "s2"])
        let extended = try forgedData("extended", "s2", "--extend", id)
        try expectRefused(extended, "past its sealed size", snapshot: ["--snapshot", "s2"])
        for forgery in [flipped, replayed, extended] {
            let r = try box.kmsfs("snapshot", "verify", forgery, "--snapshot", "s2", "--deep")
            #expect(r.status == 65 && (r.stderr.contains("not what its snapshot held") || r.stderr.contains("past its sealed size")),
                    "deep verify of \(forgery): \(r.status) \(r.stderr)")
        }
        #expect(try box.kmsfs("snapshot", "import", bundle, "victim", "--snapshot", "s2").status == 0, "the genuine bundle still imports")
        try box.mount("victim")
        defer { try? box.umount() }
        #expect(try box.read("note") == "hi\n")
        #expect(try Harness.run("/usr/bin/cmp", ["-s", "-i", "100", box.mountpoint + "/id", "/usr/bin/id"]).status == 0, "the copy of id past its new start")
    }

    @Test func aForgedSetuidRootFileGivesNoRoot() throws {
        guard Harness.fuseAvailable() else { return }
        try exportDemo(integrity: false)
        // Valid values only (no MAC can be checked without the integrity format): the copy of
        // id becomes setuid root. The mount is nosuid, so running it as nobody stays nobody.
        let setuid = try forged("setuid", "UPDATE inodes SET mode = 35309, uid = 0 WHERE mode = 33261")
        #expect(try box.kmsfs("snapshot", "import", setuid, "victim").status == 0)
        let r = try box.kmsfs("mount", "victim", box.mountpoint, "--allow-other")
        try #require(r.status == 0, "mount: \(r.stderr)")
        defer { try? box.umount() }
        let mode = try Harness.run("/usr/bin/stat", ["-c", "%a %u", box.mountpoint + "/id"])
        #expect(mode.stdout.hasPrefix("4755 0"), "the forged bits are there: \(mode.stdout)")
        let id = try asNobody("\(box.mountpoint)/id -u")
        #expect(id.status == 0 && id.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "65534", "euid: \(id.stdout) \(id.stderr)")
        let options = try Harness.run("/usr/bin/findmnt", ["-n", "-o", "OPTIONS", box.mountpoint])
        #expect(options.stdout.contains("nosuid") && options.stdout.contains("nodev"), "\(options.stdout)")
    }
}

import Foundation
import Testing

/// `kmsfs security passkey` (Kasten's passkeys) against real servers: the
/// shared OpenBao, moto's AWS KMS, and OpenBao servers of the test's own that
/// it takes down (SIGSTOP) without disturbing other tests. Three filesystems
/// in one home; every mount goes through /dev/fuse.
@Suite(.serialized) struct PasskeyTests {
    /// Short KMS timeouts: a frozen server costs two seconds, not a minute.
    static let quickKMS = ["KMSFS_KMS_TIMEOUT": "2", "KMSFS_KMS_ATTEMPTS": "1"]

    func addVault(_ box: Sandbox, _ name: String, _ bao: OpenBao) throws -> Harness.Result {
        let tokenFile = box.root + "/token-\(name)"
        try bao.token.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        return try box.kmsfs("security", "passkey", "add", name, "vault", bao.address, "kmsfs-key", "--token-file", tokenFile, "--ca-cert", bao.caCert)
    }

    func passkeys(_ box: Sandbox) throws -> (rows: [[String: Any]], threshold: Int) {
        let r = try box.kmsfs("security", "passkey", "--json")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "passkey --json: \(r.stdout)\(r.stderr)")
        return (object["passkeys"] as? [[String: Any]] ?? [], object["threshold"] as? Int ?? -1)
    }

    /// Mounts `name`, checks its file and which passkeys answered (status --json), unmounts.
    func mountAndRead(_ box: Sandbox, _ name: String, env: [String: String] = [:], extra: [String] = [],
                      sourceLocation: SourceLocation = #_sourceLocation) throws -> (mount: Harness.Result, passkeys: [String]) {
        let r = try box.kmsfs(["mount", name, box.mountpoint] + extra, env: env)
        guard r.status == 0 else { return (r, []) }
        #expect(try box.read("f.txt") == "file of \(name)\n", sourceLocation: sourceLocation)
        let status = try box.kmsfs("status", name, "--json")
        let object = (try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [[String: Any]])?.first
        let answered = (object?["kms"] as? [String: Any])?["passkeys"] as? [String] ?? []
        try box.umount()
        return (r, answered)
    }

    @Test func addListUseRemoveAndFallBack() throws {
        guard Harness.fuseAvailable(), let bao = OpenBao.available(), let moto = Moto.available() else { return }
        let site2 = try OpenBao.dedicated("passkeys-site2")
        let box = try Sandbox()
        box.env = moto.credentials
        for name in ["a", "b", "c"] {
            try box.create(name)
            try box.mount(name)
            try box.write("f.txt", "file of \(name)\n")
            try box.umount()
        }
        let initial = try passkeys(box)
        #expect(initial.rows.count == 1 && initial.rows[0]["name"] as? String == "local" && initial.rows[0]["inUse"] as? Bool == true)

        // A passphrase (recovery), OpenBao, moto's AWS KMS and a second OpenBao.
        let passphrase = box.root + "/recovery-passphrase"
        try "correct horse battery staple\n".write(toFile: passphrase, atomically: true, encoding: .utf8)
        let recovery = try box.kmsfs("security", "passkey", "add", "recovery", "passphrase", "--passphrase-file", passphrase)
        #expect(recovery.status == 0 && recovery.stdout.contains("wrapped 3 filesystem key(s)"), "add recovery: \(recovery.stdout)\(recovery.stderr)")
        let vault = try addVault(box, "vault", bao)
        #expect(vault.status == 0 && vault.stdout.contains("round trip ok"), "add vault: \(vault.stdout)\(vault.stderr)")
        // A key of the test's own: the AWS tests change the shared alias's key and its state.
        let aws = try box.kmsfs("security", "passkey", "add", "aws", "aws", moto.endpoint, try moto.admin("create-key"), "--store-credentials")
        #expect(aws.status == 0, "add aws: \(aws.stdout)\(aws.stderr)")
        let second = try addVault(box, "site2", site2)
        #expect(second.status == 0, "add site2: \(second.stdout)\(second.stderr)")
        // Refused: a name taken, a bad name, a secret in argv, a KMS that cannot round-trip (a key that does not exist).
        #expect(try box.kmsfs("security", "passkey", "add", "vault", "passphrase", "--passphrase-file", passphrase).status == 64)
        #expect(try box.kmsfs("security", "passkey", "add", "../x", "passphrase", "--passphrase-file", passphrase).status == 64)
        let tokenFile = box.root + "/token-bad"
        try bao.token.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let noKey = try box.kmsfs("security", "passkey", "add", "nokey", "vault", bao.address, "no-such-key", "--token-file", tokenFile, "--ca-cert", bao.caCert)
        #expect(noKey.status != 0 && noKey.stderr.split(separator: "\n").count == 1, "a key the token cannot use: \(noKey.stderr)")

        var listed = try passkeys(box)
        #expect(listed.rows.map { $0["name"] as? String ?? "" } == ["local", "recovery", "vault", "aws", "site2"])
        for row in listed.rows { #expect((row["filesystems"] as? [String]) == ["a", "b", "c"], "every filesystem has a slot of \(row)") }
        #expect(listed.rows.first { $0["name"] as? String == "aws" }?["type"] as? String == "aws")
        let kmsJSON = try String(contentsOfFile: box.home + "/kms.json", encoding: .utf8)
        #expect(!kmsJSON.contains(bao.token) && !kmsJSON.contains("correct horse") && !kmsJSON.contains(moto.credentials["AWS_SECRET_ACCESS_KEY"]!))

        // In use: the second site. With it down, a mount costs one timeout and goes through the next passkey.
        #expect(try box.kmsfs("security", "passkey", "use", "site2").status == 0)
        listed = try passkeys(box)
        #expect(listed.rows.first { $0["inUse"] as? Bool == true }?["name"] as? String == "site2")
        #expect(try mountAndRead(box, "a").passkeys == ["site2"])
        let started = Date()
        let fallback = try site2.whileFrozen { try mountAndRead(box, "b", env: Self.quickKMS) }
        #expect(fallback.mount.status == 0 && fallback.passkeys == ["local"], "in-use KMS down: \(fallback.mount.stderr)")
        #expect(fallback.mount.stderr.contains("passkey site2 did not answer"), "\(fallback.mount.stderr)")
        #expect(Date().timeIntervalSince(started) < 20)

        // Remove: not the in-use one; then the local key file no longer opens anything.
        #expect(try box.kmsfs("security", "passkey", "remove", "site2").status == 64, "the in-use passkey")
        #expect(try box.kmsfs("security", "passkey", "use", "vault").status == 0)
        let removed = try box.kmsfs("security", "passkey", "remove", "local")
        #expect(removed.status == 0 && removed.stdout.contains("from 3 filesystem(s)"), "remove local: \(removed.stdout)\(removed.stderr)")
        let text = String(decoding: (FileManager.default.contents(atPath: box.home + "/filesystems/c/superblock") ?? Data()).prefix(4096), as: UTF8.self)
        #expect(!text.contains("keyfile") && text.contains("recovery") && text.contains("site2"))
        #expect(try mountAndRead(box, "c").passkeys == ["vault"])

        // A forged slot (write access to the store): its label names another key than its envelope.
        // The attempt is refused before the KMS is asked, and the next passkey unlocks.
        let superblock = box.home + "/filesystems/c/superblock", saved = box.root + "/superblock-c"
        #expect(try Harness.shell("cp \(superblock) \(saved)").status == 0)
        let relabel = """
            import hashlib, struct, sys
            data = bytearray(open(sys.argv[1], "rb").read())
            for base in (0, 4096):
                b = data[base:base + 4096]
                end = 112 + struct.unpack_from("<H", b, 100)[0]
                at = b.index(b"kmsfs-key", b.index(b"\\x05\\x00vault\\x00", 112))
                b[at:at + 9] = b"kmsfs-kez"
                b[end:end + 32] = hashlib.sha256(bytes(b[:end])).digest()
                data[base:base + 4096] = b
            open(sys.argv[1], "wb").write(data)
            """
        #expect(try Harness.run("/usr/bin/python3", ["-c", relabel, superblock]).status == 0)
        let forged = try mountAndRead(box, "c")
        #expect(forged.mount.status == 0 && forged.passkeys != ["vault"] && forged.mount.stderr.contains("but its envelope"),
                "a relabelled slot: \(forged.mount.stderr) \(forged.passkeys)")
        #expect(try Harness.shell("cp \(saved) \(superblock)").status == 0)

        // kill -9 in the middle of an add: every superblock still opens with the old passkeys, and the add can be run again.
        let extra = box.root + "/extra-passphrase"
        try "another one\n".write(toFile: extra, atomically: true, encoding: .utf8)
        let killed = try box.kmsfs(["security", "passkey", "add", "extra", "passphrase", "--passphrase-file", extra], env: ["KMSFS_CRASH_AT": "keyslots-written:2"])
        #expect(killed.status != 0 && killed.status != 64, "killed part way: \(killed.status) \(killed.stderr)")
        #expect(try passkeys(box).rows.count == 4, "the registry was not written")
        for name in ["a", "b", "c"] { #expect(try mountAndRead(box, name).mount.status == 0, "\(name) after the kill") }
        let again = try box.kmsfs("security", "passkey", "add", "extra", "passphrase", "--passphrase-file", extra)
        #expect(again.status == 0 && again.stdout.contains("wrapped 3"), "add after the kill: \(again.stdout)\(again.stderr)")
        #expect(try box.kmsfs("security", "passkey", "remove", "extra").status == 0)

        // Refuse the last: with only site2 and recovery left, site2 may go (recovery unlocks), recovery then may not.
        #expect(try box.kmsfs("security", "passkey", "use", "site2").status == 0)
        for name in ["vault", "aws"] { #expect(try box.kmsfs("security", "passkey", "remove", name).status == 0, "remove \(name)") }
        #expect(try box.kmsfs("security", "passkey", "use", "recovery").status == 0)
        let lastKMS = try box.kmsfs("security", "passkey", "remove", "site2")
        #expect(lastKMS.status == 0, "recovery still unlocks: \(lastKMS.stderr)")
        let last = try box.kmsfs("security", "passkey", "remove", "recovery")
        #expect(last.status == 64, "\(last.stderr)")
        // Only the recovery passphrase is left: mounts need it, and it works.
        let needs = try box.kmsfs("mount", "a", box.mountpoint)
        #expect(needs.status == 77 && needs.stderr.contains("passphrase"), "\(needs.stderr)")
        #expect(try mountAndRead(box, "a", extra: ["--passphrase-file", passphrase]).passkeys == ["recovery"])
        let wrong = box.root + "/wrong"
        try "not it\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        #expect(try box.kmsfs("mount", "a", box.mountpoint, "--passphrase-file", wrong).status == 77)
    }

    @Test func recoveryRehydratesElsewhereAndThresholdUnlock() throws {
        guard Harness.fuseAvailable(), let moto = Moto.available() else { return }
        let siteB = try OpenBao.dedicated("passkeys-b"), siteC = try OpenBao.dedicated("passkeys-c")
        let box = try Sandbox()
        box.env = moto.credentials
        let passphrase = box.root + "/recovery-passphrase"
        try "a long recovery passphrase\n".write(toFile: passphrase, atomically: true, encoding: .utf8)
        #expect(try box.kmsfs("security", "passkey", "add", "recovery", "passphrase", "--passphrase-file", passphrase).status == 0)
        for name in ["a", "b", "c"] {
            try box.create(name)
            try box.mount(name)
            try box.write("f.txt", "file of \(name)\n")
            try box.umount()
        }
        #expect(try box.kmsfs("security", "passkey", "add", "aws", "aws", moto.endpoint, try moto.admin("create-key"), "--store-credentials").status == 0)
        #expect(try addVault(box, "vault-b", siteB).status == 0)
        #expect(try addVault(box, "vault-c", siteC).status == 0)

        // A bundle rehydrated at a site that has only the recovery passphrase.
        let snap = try box.kmsfs("snapshot", "create", "a", "s1")
        #expect(snap.status == 0, "\(snap.stderr)")
        let bundle = box.root + "/bundle"
        #expect(try box.kmsfs("snapshot", "export", "a", "s1", bundle).status == 0)
        let elsewhere = try Sandbox()
        let noPassphrase = try elsewhere.kmsfs("snapshot", "import", bundle, "a")
        #expect(noPassphrase.status != 0 && !FileManager.default.fileExists(atPath: elsewhere.home + "/filesystems/a"), "\(noPassphrase.stderr)")
        let imported = try elsewhere.kmsfs("snapshot", "import", bundle, "a", "--passphrase-file", passphrase)
        #expect(imported.status == 0, "import with only the passphrase: \(imported.stderr)")
        #expect(imported.stdout.contains("unlocked by recovery"), "\(imported.stdout)")
        #expect(try mountAndRead(elsewhere, "a", extra: ["--passphrase-file", passphrase]).passkeys.first?.hasPrefix("recovery") == true)
        // A site whose only passkey is another name for one of the Vaults: the bundle's slot of that Vault opens through it.
        let secondSite = try Sandbox()
        #expect(try addVault(secondSite, "dr-vault", siteB).status == 0)
        let viaVault = try secondSite.kmsfs("snapshot", "import", bundle, "a")
        #expect(viaVault.status == 0 && viaVault.stdout.contains("unlocked by vault-b (through dr-vault)"), "\(viaVault.stdout)\(viaVault.stderr)")
        // `snapshot rewrap` there moves the bundle to that home's passkeys (its local key file), keeping the recovery wrap.
        let rewrapped = try elsewhere.kmsfs("snapshot", "rewrap", bundle, "--passphrase-file", passphrase)
        #expect(rewrapped.status == 0 && rewrapped.stdout.contains("rewrapped 1 manifest"), "\(rewrapped.stdout)\(rewrapped.stderr)")
        let again = try elsewhere.kmsfs("snapshot", "import", bundle, "a2")
        #expect(again.status == 0 && again.stdout.contains("unlocked by local"), "the rewrapped bundle opens with that home's key file: \(again.stdout)\(again.stderr)")
        let viaRecovery = try Sandbox().kmsfs("snapshot", "import", bundle, "a3", "--passphrase-file", passphrase)
        #expect(viaRecovery.status == 0, "and still with the recovery passphrase anywhere: \(viaRecovery.stderr)")

        // Threshold 2 of 3: refused while the local key file is a passkey.
        #expect(try box.kmsfs("security", "passkey", "threshold", "2").status == 64)
        #expect(try box.kmsfs("security", "passkey", "use", "vault-b").status == 0)
        #expect(try box.kmsfs("security", "passkey", "remove", "local").status == 0)
        let split = try box.kmsfs("security", "passkey", "threshold", "2")
        #expect(split.status == 0 && split.stdout.contains("split 3"), "threshold: \(split.stdout)\(split.stderr)")
        #expect(try passkeys(box).threshold == 2)
        let all = try mountAndRead(box, "a")
        #expect(all.mount.status == 0 && all.passkeys == ["vault-b", "aws"], "\(all.mount.stderr) \(all.passkeys)")
        // One KMS down: the other two answer.
        let one = try siteB.whileFrozen { try mountAndRead(box, "b", env: Self.quickKMS) }
        #expect(one.mount.status == 0 && Set(one.passkeys) == ["aws", "vault-c"], "one down: \(one.mount.stderr) \(one.passkeys)")
        // Two down: refused, naming them, and the store is untouched.
        let two = try siteB.whileFrozen { try siteC.whileFrozen { try box.kmsfs(["mount", "c", box.mountpoint], env: Self.quickKMS) } }
        #expect(two.status == 69 && two.stderr.contains("vault-b") && two.stderr.contains("vault-c") && two.stderr.contains("1 of the 2"),
                "two down: \(two.status) \(two.stderr)")
        #expect(two.stderr.split(separator: "\n").filter { $0.hasPrefix("kmsfs: error") }.count == 1)
        // The recovery passphrase is a whole-key slot: it opens even then.
        let recovered = try siteB.whileFrozen { try siteC.whileFrozen { try mountAndRead(box, "c", env: Self.quickKMS, extra: ["--passphrase-file", passphrase]) } }
        #expect(recovered.mount.status == 0 && recovered.passkeys.contains("recovery"), "\(recovered.mount.stderr)")
        // `kms set` would replace one share holder's KMS: refused, add and remove passkeys instead.
        #expect(try box.kmsfs("security", "kms", "set", "aws", moto.endpoint, try moto.admin("create-key")).status == 64)
        // A new filesystem under the threshold gets shares too; threshold 1 gives every passkey the whole key again.
        try box.create("d")
        let created = try String(contentsOfFile: box.home + "/filesystems/d/superblock", encoding: .isoLatin1)
        #expect(created.contains("vault-b") && created.contains("vault-c") && created.contains("aws") && created.contains("recovery"))
        #expect(try box.kmsfs("security", "passkey", "threshold", "1").status == 0)
        let single = try siteB.whileFrozen { try siteC.whileFrozen { try box.kmsfs(["mount", "c", box.mountpoint], env: Self.quickKMS) } }
        #expect(single.status == 0, "threshold off: aws alone unlocks: \(single.stderr)")
        try box.umount()
    }
}

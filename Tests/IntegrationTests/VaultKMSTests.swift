import Foundation
import Testing

/// `kmsfs security kms` against a real OpenBao server (Vault transit API):
/// the seed's parameter rules, the all-or-nothing rewrap on set, the full
/// rotate-and-rewrap lifecycle through FUSE mounts, the failures users meet,
/// and token renewal by a mounted filesystem. Serialized: some tests freeze
/// the shared server.
@Suite(.serialized) struct VaultKMSTests {
    /// `kms set vault` with the test server's CA and a token file.
    func setVault(_ box: Sandbox, _ bao: OpenBao, token: String? = nil, key: String = "kmsfs-key", extra: [String] = [],
                  env: [String: String] = [:]) throws -> Harness.Result {
        let tokenFile = box.root + "/token"
        try (token ?? bao.token).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        return try Harness.run(Harness.binary, ["security", "kms", "set", "vault", bao.address, key, "--token-file", tokenFile,
                                                "--ca-cert", bao.caCert] + extra,
                               env: ["KMSFS_HOME": box.home].merging(env) { $1 })
    }

    func superblockText(_ box: Sandbox, _ name: String = "demo") -> String {
        let bytes = (FileManager.default.contents(atPath: box.home + "/filesystems/\(name)/superblock") ?? Data())
        return String(decoding: bytes.map { $0 >= 0x20 && $0 < 0x7f ? $0 : 0x2e }, as: UTF8.self)
    }

    /// `--anchor-mount`: the generation is also kept in a KV v2 secret written
    /// with check-and-set, so rewriting the home's anchor with the store does not
    /// hide a rollback; a writer holding an old version is refused.
    @Test func rollbackAnchorInVaultKV() throws {
        guard Harness.fuseAvailable(), let bao = OpenBao.available() else { return }
        let box = try Sandbox()
        let set = try setVault(box, bao, extra: ["--anchor-mount", "anchors"])
        try #require(set.status == 0 && set.stdout.contains("rollback anchors in anchors/kmsfs/anchors/"), "set: \(set.stdout)\(set.stderr)")
        try box.create()
        try box.mount()
        try box.umount()
        let saved = box.root + "/store-copy"
        #expect(try Harness.run("/bin/cp", ["-a", box.store, saved]).status == 0)
        try box.mount()
        for i in 0..<3 { #expect(try Harness.shell("echo \(i) > \(box.mountpoint)/f\(i) && sync \(box.mountpoint)/f\(i)").status == 0) }
        try box.umount()
        let list = try box.kmsfs("fs", "list", "--json")
        let uuid = try #require((try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: String]])?.first?["uuid"])
        let instances = try bao.bao("kv", "list", "-format=json", "anchors/kmsfs/anchors/\(uuid)")
        let instance = try #require((try JSONSerialization.jsonObject(with: Data(instances.stdout.utf8)) as? [String])?.first, "\(instances.stdout)\(instances.stderr)")
        func kv() throws -> (generation: Int, version: Int) {
            let r = try bao.bao("kv", "get", "-format=json", "anchors/kmsfs/anchors/\(uuid)/\(instance)")
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            let data = object?["data"] as? [String: Any]
            return (Int((data?["data"] as? [String: Any])?["generation"] as? String ?? "") ?? -1, (data?["metadata"] as? [String: Any])?["version"] as? Int ?? -1)
        }
        let anchored = try kv()
        #expect(anchored.generation >= 5 && anchored.version >= 2, "the KV anchor follows the mounts: \(anchored)")

        // Someone who can write the store and the home: the old store back, the home's anchor gone.
        try FileManager.default.removeItem(atPath: box.store)
        #expect(try Harness.run("/bin/cp", ["-a", saved, box.store]).status == 0)
        try FileManager.default.removeItem(atPath: box.home + "/anchors")
        let refused = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(refused.status == 65 && refused.stderr.contains("Vault anchor"), "\(refused.stderr)")
        try box.mount("demo", ["--accept-rollback"])
        try box.umount()
        let reanchored = try kv()
        #expect(reanchored.generation < anchored.generation && reanchored.version > anchored.version, "re-anchored lower on purpose: \(reanchored)")
        // Check-and-set: a write naming a version that is no longer current is refused by the server.
        let stale = try bao.bao("kv", "put", "-cas=\(anchored.version)", "anchors/kmsfs/anchors/\(uuid)/\(instance)", "generation=999")
        #expect(stale.status != 0 && stale.stderr.contains("check-and-set"), "\(stale.stderr)")
    }

    @Test func lifecycleRotateAndRewrap() throws {
        guard Harness.fuseAvailable(), let bao = OpenBao.available() else { return }
        let box = try Sandbox()
        let set = try setVault(box, bao)
        try #require(set.status == 0, "set: \(set.stderr)")
        #expect(set.stdout.contains("round trip ok"))
        try box.create()
        #expect(superblockText(box).contains("vault:v1:"))
        try box.mount()
        try box.write("a.txt", "kept across a key rotation\n")
        try box.umount()

        let rotated = try bao.bao("write", "-f", "transit/keys/kmsfs-key/rotate")
        try #require(rotated.status == 0, "rotate: \(rotated.stderr)")
        let rewrap = try box.kmsfs("security", "kms", "rewrap")
        #expect(rewrap.status == 0, "rewrap: \(rewrap.stderr)")
        #expect(rewrap.stdout.contains("rewrapped 1 filesystem key(s)"))
        let text = superblockText(box)
        #expect(text.contains("vault:v2:") || text.contains("vault:v3:"), "superblock must hold the rotated version")
        #expect(!text.contains("vault:v1:"))

        try box.mount()
        #expect(try box.read("a.txt") == "kept across a key rotation\n")
        try box.umount()

        // Show: versions, TTL, no secret; JSON for scripts.
        let show = try box.kmsfs("security", "kms", "--json")
        #expect(show.status == 0, "show: \(show.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any]
        #expect(object?["reachable"] as? Bool == true)
        #expect(Int(object?["key_latest_version"] as? String ?? "") ?? 0 >= 2)
        #expect(object?["key_min_decryption_version"] as? String == "1")
        let policies = object?["token_policies"] as? String ?? ""
        #expect(policies.contains("kmsfs"))
        #expect(Int(object?["token_ttl_seconds"] as? String ?? "") ?? 0 > 0)
        #expect(object?["filesystems"] as? [String] == ["demo"])
        // The token is nowhere in plain text: not in output, config, superblock or logs.
        var everything = show.stdout + set.stdout + set.stderr + rewrap.stdout + superblockText(box)
        everything += (try? String(contentsOfFile: box.home + "/kms.json", encoding: .utf8)) ?? ""
        everything += (try? String(contentsOfFile: box.home + "/logs/demo.log", encoding: .utf8)) ?? ""
        let events = (try? String(contentsOfFile: box.home + "/events.log", encoding: .utf8)) ?? ""
        #expect(events.contains("\"event\":\"rewrap\"") && events.contains("\"kms\":\"vault\""), "the audit log records the vault rewrap: \(events)")
        everything += events
        #expect(!everything.contains(bao.token))
        let mode = try FileManager.default.attributesOfItem(atPath: box.home + "/kms.json")[.posixPermissions] as? Int
        #expect(mode == 0o600)

        let withUID = try box.kmsfs("security", "kms", "rewrap", "--new-key-uid", "other")
        #expect(withUID.status == 64)
        #expect(withUID.stderr.contains("--new-key-uid is not allowed for vault"))
    }

    @Test func setRewrapsExistingLocalKeysAllOrNothing() throws {
        guard Harness.fuseAvailable(), let bao = OpenBao.available() else { return }
        let box = try Sandbox()
        for name in ["a", "b", "c"] { try box.create(name) }
        try box.mount("a")
        try box.write("f", "written under the local key\n")
        try box.umount()
        let before = ["a", "b", "c"].map { superblockText(box, $0) }

        // A superblock that cannot be written (immutable) makes the third rewrap fail:
        // the first two must be put back and no KMS configuration saved.
        let sbC = box.home + "/filesystems/c/superblock"
        try #require(try Harness.run("/usr/bin/chattr", ["+i", sbC]).status == 0)
        let failed = try setVault(box, bao)
        _ = try Harness.run("/usr/bin/chattr", ["-i", sbC])
        #expect(failed.status != 0)
        #expect(failed.stderr.contains("superblock"), "\(failed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/kms.json"))
        for (i, name) in ["a", "b", "c"].enumerated() {
            #expect(!superblockText(box, name).contains("vault:v"), "\(name) must still be wrapped by the local key")
            #expect(superblockText(box, name).contains("keyfile") == before[i].contains("keyfile"))
        }
        try box.mount("a")
        #expect(try box.read("f") == "written under the local key\n")
        try box.umount()

        let ok = try setVault(box, bao)
        #expect(ok.status == 0, "set: \(ok.stderr)")
        for name in ["a", "b", "c"] { #expect(superblockText(box, name).contains("vault:v"), "\(name) rewrapped to vault") }
        try box.mount("a")
        #expect(try box.read("f") == "written under the local key\n")
        try box.umount()

        let refused = try box.kmsfs("security", "kms", "unset")
        #expect(refused.status == 64)
        #expect(refused.stderr.contains("a, b, c"))
        let downgrade = try box.kmsfs("security", "kms", "unset", "--allow-downgrade")
        #expect(downgrade.status == 0, "unset: \(downgrade.stderr)")
        #expect(downgrade.stderr.contains("protected only by the local key file"))
        #expect(!FileManager.default.fileExists(atPath: box.home + "/kms.json"))
        for name in ["a", "b", "c"] { #expect(!superblockText(box, name).contains("vault:v")) }
        try box.mount("a")
        #expect(try box.read("f") == "written under the local key\n")
        try box.umount()
    }

    @Test func credentialAndKeyFailuresChangeNothing() throws {
        guard let bao = OpenBao.available() else { return }
        let box = try Sandbox()
        try box.create()
        let before = superblockText(box)
        func expectNothingChanged(_ r: Harness.Result, code: Int32, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
            #expect(r.status == code, "exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.contains(message), "\(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.split(separator: "\n").count == 1, "one line: \(r.stderr)", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: box.home + "/kms.json"), sourceLocation: sourceLocation)
            #expect(superblockText(box) == before, sourceLocation: sourceLocation)
        }
        expectNothingChanged(try setVault(box, bao, token: "s.not-a-real-token"), code: 77, "rejected the credentials")
        let noPolicy = try bao.bao("token", "create", "-policy=default", "-field=token")
        try #require(noPolicy.status == 0)
        expectNothingChanged(try setVault(box, bao, token: noPolicy.stdout.trimmingCharacters(in: .whitespacesAndNewlines)),
                             code: 77, "lacks the \"read\" capability on path \"transit/keys/kmsfs-key\"")
        expectNothingChanged(try setVault(box, bao, token: bao.rootToken, key: "no-such-key"), code: 78, "has no key 'no-such-key'")
        // TLS: without --ca-cert the private CA is not trusted; a wrong CA is refused too.
        let tokenFile = box.root + "/token"
        let noCA = try box.kmsfs("security", "kms", "set", "vault", bao.address, "kmsfs-key", "--token-file", tokenFile)
        expectNothingChanged(noCA, code: 78, "TLS handshake with vault")
        let otherCA = box.root + "/other-ca.pem"
        _ = try Harness.shell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=other -keyout \(box.root)/k.pem -out \(otherCA) 2>/dev/null")
        let wrongCA = try box.kmsfs("security", "kms", "set", "vault", bao.address, "kmsfs-key", "--token-file", tokenFile, "--ca-cert", otherCA)
        expectNothingChanged(wrongCA, code: 78, "TLS handshake with vault")
        // Nothing listens: unreachable after the retries.
        let closed = try box.kmsfs("security", "kms", "set", "vault", "https://127.0.0.1:9", "kmsfs-key", "--token-file", tokenFile,
                                   env: ["KMSFS_KMS_ATTEMPTS": "2", "KMSFS_KMS_TIMEOUT": "2"])
        expectNothingChanged(closed, code: 69, "unreachable")
    }

    @Test func kmsDownAtMountAndWhileMounted() throws {
        guard Harness.fuseAvailable(), let bao = OpenBao.available() else { return }
        let box = try Sandbox()
        try #require(try setVault(box, bao).status == 0)
        try box.create()
        try box.mount()
        try box.write("before", "x")
        // Down while mounted: I/O goes on, the KMS is not on the data path.
        try bao.whileFrozen {
            try box.write("during", String(repeating: "y", count: 300_000))
            #expect(try box.read("before") == "x")
            #expect(try box.read("during").count == 300_000)
            #expect(try Harness.run("/bin/sync", []).status == 0)
        }
        try box.umount()
        // Down at mount: a clear error, no mount, nothing changed.
        let before = superblockText(box)
        let r = try bao.whileFrozen {
            try Harness.run(Harness.binary, ["mount", "demo", box.mountpoint],
                            env: ["KMSFS_HOME": box.home, "KMSFS_KMS_ATTEMPTS": "2", "KMSFS_KMS_TIMEOUT": "1"])
        }
        #expect(r.status == 69, "mount with the KMS down: \(r.stderr)")
        #expect(r.stderr.contains("vault at \(bao.address) is unreachable"), "\(r.stderr)")
        #expect(!((try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? "").contains(box.mountpoint))
        #expect(superblockText(box) == before)
        try box.mount()
        #expect(try box.read("during").count == 300_000)
        try box.umount()
    }

    @Test func namespaceIsSentAsHeader() throws {
        guard let bao = OpenBao.available() else { return }
        let box = try Sandbox()
        let ns = "team\(getpid() % 10000)"
        try #require(try bao.bao("namespace", "create", ns).status == 0)
        for step in [["secrets", "enable", "transit"], ["write", "-f", "transit/keys/kmsfs-key"],
                     ["policy", "write", "kmsfs", bao.dir + "/kmsfs-policy.hcl"]] {
            let r = try Harness.run(bao.env["BAO_BIN"]!, step, env: ["BAO_ADDR": bao.address, "BAO_CACERT": bao.caCert,
                                                                     "BAO_TOKEN": bao.rootToken, "BAO_NAMESPACE": ns])
            try #require(r.status == 0, "\(step): \(r.stderr)")
        }
        let made = try bao.bao("token", "create", "-policy=kmsfs", "-field=token", namespace: ns)
        try #require(made.status == 0, "\(made.stderr)")
        let token = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // Without the namespace the token is unknown at the root; with it, everything works.
        #expect(try setVault(box, bao, token: token).status == 77)
        let ok = try setVault(box, bao, token: token, extra: ["--namespace", ns])
        #expect(ok.status == 0, "set with namespace: \(ok.stderr)")
        try box.create()
        let show = try box.kmsfs("security", "kms")
        #expect(show.stdout.contains("namespace") && show.stdout.contains(ns))
        #expect(try box.kmsfs("fs", "create", "second").status == 0)
    }

    @Test func mountedFilesystemRenewsAShortPeriodToken() throws {
        guard Harness.fuseAvailable(), let bao = OpenBao.available() else { return }
        let box = try Sandbox()
        let token = try bao.periodicToken(period: "4s", role: "kmsfs-short")
        let control = try bao.periodicToken(period: "4s", role: "kmsfs-short")
        try #require(try setVault(box, bao, token: token).status == 0)
        try box.create()
        try box.mount()
        Thread.sleep(forTimeInterval: 13)  // more than three periods
        // The control token, never renewed, has expired; the mounted filesystem's has not.
        #expect(try bao.bao("token", "lookup", control).status != 0, "an unrenewed 4 s token must expire")
        let lookup = try bao.bao("token", "lookup", "-format=json", token)
        #expect(lookup.status == 0, "the mounted filesystem must have kept its token alive: \(lookup.stderr)")
        try box.write("still", "ok")
        try box.umount()
        let log = (try? String(contentsOfFile: box.home + "/logs/demo.log", encoding: .utf8)) ?? ""
        #expect(log.contains("renewed the vault token"))
        #expect(!log.contains(token))
    }
}

/// The seed's parameter table for `kms set`: every rule is a one-line usage
/// error before any network call (the addresses here lead nowhere).
@Suite struct KMSParameterRuleTests {
    @Test(arguments: [
        (["aws2", "https://v:8200", "k", "--token", "t"], "KMS type must be 'vault', 'kmip' or 'aws'"),
        (["aws", "useast", "alias/k"], "aws address must be a region"),
        (["aws", "us-east-1", "mykey"], "aws key must be a key id, key ARN, alias/NAME or alias ARN"),
        (["aws", "us-east-1", "alias/k", "--token", "t"], "--token is not allowed for aws"),
        (["aws", "us-east-1", "alias/k", "--client-cert", "/etc/hostname"], "--client-cert and --client-key are not allowed for aws"),
        (["aws", "us-east-1", "alias/k", "--namespace", "ns"], "--namespace is not allowed for aws"),
        (["vault", "https://v:8200", "k", "--token", "t", "--profile", "p"], "--profile, --region and --store-credentials are only for aws"),
        (["vault", "v:8200", "k", "--token", "t"], "vault address must be a URL"),
        (["vault", "https://v:8200", "k"], "--token (or --token-file, or $VAULT_TOKEN) is mandatory for vault"),
        (["vault", "https://v:8200", "k", "--token", "t", "--client-cert", "/etc/hostname"], "--client-cert is not allowed for vault"),
        (["vault", "https://v:8200", "k", "--token", "t", "--client-key", "/etc/hostname"], "--client-key is not allowed for vault"),
        (["vault", "https://v:8200", "k", "--token", "t", "--namespace", "team/"], "must not end with '/'"),
        (["vault", "https://v:8200", "k", "--token", "t", "--namespace", "my team"], "must not contain spaces"),
        (["vault", "https://v:8200", "k", "--token", "t", "--namespace", "sys"], "is reserved"),
        (["vault", "https://v:8200", "k", "--token", "t", "--namespace", "cubbyhole"], "is reserved"),
        (["vault", "https://v:8200", "k", "--token", "t", "--token-file", "/etc/hostname"], "give --token or --token-file, not both"),
        (["vault", "https://v:8200", "k", "--token", "t", "--ca-cert", "/nonexistent.pem"], "--ca-cert /nonexistent.pem: no such readable file"),
        (["kmip", "https://kms:5696", "uid", "--client-cert", "/etc/hostname", "--client-key", "/etc/hostname"], "kmip address must be hostname:port"),
        (["kmip", "kms:99999", "uid", "--client-cert", "/etc/hostname", "--client-key", "/etc/hostname"], "kmip address must be hostname:port"),
        (["kmip", "kms:5696", "uid", "--token", "t", "--client-cert", "/etc/hostname", "--client-key", "/etc/hostname"], "--token is not allowed for kmip"),
        (["kmip", "kms:5696", "uid", "--client-key", "/etc/hostname"], "--client-cert is mandatory for kmip"),
        (["kmip", "kms:5696", "uid", "--client-cert", "/etc/hostname"], "--client-key is mandatory for kmip"),
        (["kmip", "kms:5696", "uid", "--client-cert", "/etc/hostname", "--client-key", "/etc/hostname", "--namespace", "ns"], "--namespace is not allowed for kmip"),
    ] as [([String], String)])
    func rule(arguments: [String], message: String) throws {
        let box = try Sandbox()
        let r = try box.kmsfs(["security", "kms", "set"] + arguments, env: ["VAULT_TOKEN": ""])
        #expect(r.status == 64, "\(arguments): exit \(r.status) \(r.stderr)")
        #expect(r.stderr.contains(message), "\(arguments): \(r.stderr)")
        #expect(r.stderr.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: box.home + "/kms.json"))
    }

    @Test func vaultTokenFromEnvironmentCounts() throws {
        let box = try Sandbox()
        // The token rule is satisfied by $VAULT_TOKEN; the failure is then the (closed) address.
        let r = try box.kmsfs(["security", "kms", "set", "vault", "http://127.0.0.1:9", "k"],
                              env: ["VAULT_TOKEN": "s.x", "KMSFS_KMS_ATTEMPTS": "1"])
        #expect(r.status == 69, "\(r.stderr)")
        #expect(r.stderr.contains("unreachable"))
    }

    @Test func rewrapWithoutKMSAndShowLocal() throws {
        let box = try Sandbox()
        let r = try box.kmsfs("security", "kms", "rewrap")
        #expect(r.status == 64)
        #expect(r.stderr.contains("no KMS is configured"))
        let show = try box.kmsfs("security", "kms")
        #expect(show.status == 0, "a fresh home shows the local key, not an error: \(show.stderr)")
        #expect(show.stdout.contains("type") && show.stdout.contains("local") && show.stdout.contains("not created yet"))
    }
}

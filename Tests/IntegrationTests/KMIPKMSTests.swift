import Foundation
import Testing

/// `kmsfs security kms set kmip` against PyKMIP over mutual TLS: the lifecycle
/// with a new key and `rewrap --new-key-uid`, and the failures a KMIP user meets.
@Suite(.serialized) struct KMIPKMSTests {
    /// A KMIP passkey beside the local key file: added with the same checks as
    /// `kms set`, made the one in use, and the only one left once the key file
    /// is removed; the filesystem then mounts through KMIP alone.
    @Test func kmipPasskey() throws {
        guard Harness.fuseAvailable(), let kmip = PyKMIP.available() else { return }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        try box.write("a.txt", "through a KMIP passkey\n")
        try box.umount()
        let uid = try kmip.admin("create")
        let added = try box.kmsfs(["security", "passkey", "add", "hsm", "kmip", kmip.address, uid] + kmip.tlsArguments)
        #expect(added.status == 0 && added.stdout.contains("TLS ok, KMIP 1.") && added.stdout.contains("wrapped 1 filesystem key(s)"),
                "passkey add kmip: \(added.stdout)\(added.stderr)")
        // A KMIP key the KMS does not have fails the round trip, and nothing is added.
        let missing = try box.kmsfs(["security", "passkey", "add", "ghost", "kmip", kmip.address, "no-such-uid"] + kmip.tlsArguments)
        let afterMissing = try box.kmsfs("security", "passkey").stdout
        #expect(missing.status != 0 && !afterMissing.contains("ghost"), "\(missing.stderr)")
        #expect(try box.kmsfs("security", "passkey", "use", "hsm").status == 0)
        #expect(try box.kmsfs("security", "passkey", "remove", "local").status == 0)
        let list = try box.kmsfs("security", "passkey", "--json")
        let rows = (try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any])?["passkeys"] as? [[String: Any]] ?? []
        #expect(rows.count == 1 && rows.first?["type"] as? String == "kmip" && rows.first?["inUse"] as? Bool == true, "\(list.stdout)")
        try box.mount()
        #expect(try box.read("a.txt") == "through a KMIP passkey\n")
        try box.umount()
    }

    @Test func lifecycleWithNewKeyRewrap() throws {
        guard Harness.fuseAvailable(), let kmip = PyKMIP.available() else { return }
        let box = try Sandbox()
        let uid = try kmip.admin("create")
        let set = try box.kmsfs(["security", "kms", "set", "kmip", kmip.address, uid] + kmip.tlsArguments)
        try #require(set.status == 0, "set: \(set.stderr)")
        #expect(set.stdout.contains("TLS ok, KMIP 1."))
        try box.create()
        #expect(try box.keyOf() == uid)
        try box.mount()
        try box.write("a.txt", "kept across a KMIP key change\n")
        try box.umount()
        // A bundle exported while the first key wraps the filesystem key.
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let bundle = box.root + "/bundle", kept = box.root + "/bundle-not-rewrapped"
        #expect(try box.kmsfs("snapshot", "export", "demo", "s1", bundle).status == 0)

        let second = try kmip.admin("create")
        let missing = try box.kmsfs("security", "kms", "rewrap")
        #expect(missing.status == 64)
        #expect(missing.stderr.contains("--new-key-uid is mandatory for kmip"))
        let rewrap = try box.kmsfs("security", "kms", "rewrap", "--new-key-uid", second)
        #expect(rewrap.status == 0, "rewrap: \(rewrap.stderr)")
        #expect(rewrap.stdout.contains("keep the old key in the KMS"))
        #expect(try box.keyOf() == second)
        try box.mount()
        #expect(try box.read("a.txt") == "kept across a KMIP key change\n")
        try box.umount()

        let show = try box.kmsfs("security", "kms", "--json")
        let object = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any]
        #expect(object?["reachable"] as? Bool == true, "\(show.stdout) \(show.stderr)")
        #expect(object?["key"] as? String == second)
        #expect(object?["key_state"] as? String == "Active")

        // The seed's warning, for bundles: KMIP has no key versions, so a bundle made before the rewrap
        // still needs the old key. While it exists the old bundle imports; `snapshot rewrap` moves the
        // bundle to the configured (new) key; once the old key is revoked only rewrapped bundles import.
        #expect(try Harness.shell("cp -a \(bundle) \(kept)").status == 0)
        let old = try box.kmsfs("snapshot", "import", bundle, "old")
        #expect(old.status == 0, "a bundle wrapped by the old key, which still exists: \(old.stderr)")
        let rewrapped = try box.kmsfs("snapshot", "rewrap", bundle)
        #expect(rewrapped.status == 0 && rewrapped.stdout.contains("kmip \(uid)") && rewrapped.stdout.contains("-> kmip \(second)"),
                "snapshot rewrap: \(rewrapped.stdout) \(rewrapped.stderr)")
        // A home that only ever knew the second key does not ask the KMS to decrypt with another
        // key just because an envelope names it (the client certificate may reach several keys).
        let other = try Sandbox()
        let otherSet = try other.kmsfs(["security", "kms", "set", "kmip", kmip.address, second] + kmip.tlsArguments)
        try #require(otherSet.status == 0, "set: \(otherSet.stderr)")
        let foreign = try other.kmsfs("snapshot", "import", kept, "foreign")
        #expect(foreign.status == 78 && foreign.stderr.contains("never configured") && foreign.stderr.contains(uid),
                "an envelope naming an unconfigured KMIP key: \(foreign.status) \(foreign.stderr)")
        try kmip.admin("revoke", uid)
        let after = try box.kmsfs("snapshot", "import", bundle, "after")
        #expect(after.status == 0, "the rewrapped bundle after the old key was revoked: \(after.stderr)")
        let stale = try box.kmsfs("snapshot", "import", kept, "stale")
        #expect(stale.status == 78 && stale.stderr.contains(uid), "a bundle still wrapped by the revoked key: \(stale.status) \(stale.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/filesystems/stale"))
        #expect(try box.kmsfs("mount", "after", box.mountpoint).status == 0)
        #expect(try box.read("a.txt") == "kept across a KMIP key change\n")
        try box.umount()
    }

    @Test func failuresAreNamedAndChangeNothing() throws {
        guard let kmip = PyKMIP.available() else { return }
        let box = try Sandbox()
        try box.create()
        let uid = try kmip.admin("create")
        func expectRefused(_ args: [String], code: Int32, _ message: String, env: [String: String] = [:],
                           sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try box.kmsfs(["security", "kms", "set", "kmip"] + args, env: env)
            #expect(r.status == code, "exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.contains(message), "\(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.split(separator: "\n").count == 1, sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: box.home + "/kms.json"), sourceLocation: sourceLocation)
        }
        let e = kmip.env
        // A CA that did not sign the server's certificate.
        try expectRefused([kmip.address, uid, "--client-cert", e["KMIP_CLIENT_CERT"]!, "--client-key", e["KMIP_CLIENT_KEY"]!,
                           "--ca-cert", e["KMIP_OTHER_CA"]!], code: 78, "the server's certificate is not trusted")
        // A client certificate without the clientAuth extended key usage.
        try expectRefused([kmip.address, uid, "--client-cert", e["KMIP_NOEKU_CERT"]!, "--client-key", e["KMIP_NOEKU_KEY"]!,
                           "--ca-cert", e["KMIP_CA"]!], code: 77, "Authentication Not Successful")
        try expectRefused([kmip.address, "99999"] + kmip.tlsArguments, code: 78, "Item Not Found")
        let inactive = try kmip.admin("create-inactive")
        try expectRefused([kmip.address, inactive] + kmip.tlsArguments, code: 78, "its state is Pre-Active, not Active")
        let revoked = try kmip.admin("create")
        try kmip.admin("revoke", revoked)
        try expectRefused([kmip.address, revoked] + kmip.tlsArguments, code: 78, "its state is Deactivated, not Active")
        try expectRefused(["127.0.0.1:9", uid] + kmip.tlsArguments, code: 69, "unreachable",
                          env: ["KMSFS_KMS_ATTEMPTS": "2", "KMSFS_KMS_TIMEOUT": "2"])
        // None of this touched the filesystem's key.
        #expect(try box.keyOf() == "keyfile")
    }
}

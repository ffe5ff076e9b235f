import Foundation
import Testing

/// Snapshot bundles with real servers: S3 object stores (moto with signature
/// checking on, and SeaweedFS) and rehydration on "another host" (a second kmsfs home that
/// has only the KMS configuration) through OpenBao, across a key rotation.
@Suite(.serialized) struct SnapshotKMSTests {
    /// The S3 round trip both servers get: a snapshot of a 40 MB file and a
    /// source tree, exported with 32 MiB chunks (the large one by multipart
    /// upload), exported again (nothing sent), verified with the manifest
    /// fetched in 4 KiB ranges (`verifyEnv`: which identity), imported, and
    /// compared with the snapshot view. Leaves the filesystem unmounted.
    func roundTrip(_ box: Sandbox, tree: String, location: String, endpoint: String, verifyEnv: [String: String]) throws {
        try box.create()
        try box.mount()
        #expect(try Harness.shell("head -c 40000000 /dev/urandom > \(box.mountpoint)/large && cp -r \(Harness.packageRoot)/Sources/\(tree) \(box.mountpoint)/").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let exportArgs = ["snapshot", "export", "demo", "s1", location, "--endpoint-url", endpoint, "--chunk-size", "32M", "--json"]
        let export = try box.kmsfs(exportArgs)
        try #require(export.status == 0, "export to \(location): \(export.stderr)")
        let summary = Harness.json(export.stdout)
        #expect((summary["multipartUploads"] as? Int ?? 0) >= 1, "\(summary)")
        #expect((summary["uploadedBytes"] as? Int ?? 0) >= 40_000_000)
        let again = Harness.json(try box.kmsfs(exportArgs).stdout)
        #expect(again["uploadedBytes"] as? Int == 0, "re-export sends nothing: \(again)")
        let verify = try box.kmsfs(["snapshot", "verify", location, "--endpoint-url", endpoint], env: verifyEnv.merging(["KMSFS_S3_RANGE_SIZE": "4096"]) { $1 })
        #expect(verify.status == 0, "verify, manifest fetched in 4 KiB ranges: \(verify.stderr)")

        let imported = try box.kmsfs("snapshot", "import", location, "copy", "--endpoint-url", endpoint)
        try #require(imported.status == 0, "import from \(location): \(imported.stderr)")
        let view = try box.directory("view"), copy = try box.directory("copy")
        try box.mountSnapshot("s1", at: view)
        #expect(try box.kmsfs("mount", "copy", copy).status == 0)
        let diff = try Harness.shell("diff -r \(view) \(copy)")
        #expect(diff.status == 0, "diff -r: \(diff.stdout.prefix(500))")
        try box.umount(view)
        try box.umount(copy)
        try box.umount()
    }

    @Test func exportToS3AndRehydrateFromIt() throws {
        guard Harness.fuseAvailable(), let moto = Moto.available() else { return }
        let box = try Sandbox()
        box.env = moto.credentials
        let location = "s3://\(moto.env["MOTO_BUCKET"]!)/\(UUID().uuidString.prefix(8))/demo"
        try roundTrip(box, tree: "SnapExport", location: location, endpoint: moto.endpoint, verifyEnv: [:])

        // Wrong credentials and a missing bucket: one clear line each, nothing created.
        let denied = try box.kmsfs(["snapshot", "import", location, "denied", "--endpoint-url", moto.endpoint],
                                   env: ["AWS_ACCESS_KEY_ID": moto.env["MOTO_ACCESS_KEY_ID"]!, "AWS_SECRET_ACCESS_KEY": "wrong"])
        #expect(denied.status == 69 && denied.stderr.contains("SignatureDoesNotMatch"), "\(denied.stderr)")
        let noBucket = try box.kmsfs("snapshot", "verify", "s3://no-such-bucket/x", "--endpoint-url", moto.endpoint)
        #expect(noBucket.status == 69 && noBucket.stderr.contains("no-such-bucket"), "\(noBucket.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/filesystems/denied"))
    }

    @Test func exportToSeaweedFSAndRehydrateFromIt() throws {
        guard Harness.fuseAvailable(), let seaweed = SeaweedFS.available() else { return }
        let box = try Sandbox()
        box.env = seaweed.credentials
        let location = "s3://\(seaweed.bucket)/\(UUID().uuidString.prefix(8))/demo"
        // The read-only identity verifies; it cannot export.
        try roundTrip(box, tree: "MetaStore", location: location, endpoint: seaweed.endpoint, verifyEnv: seaweed.readOnlyCredentials)
        let denied = try box.kmsfs(["snapshot", "export", "demo", "s1", location + "-ro", "--endpoint-url", seaweed.endpoint], env: seaweed.readOnlyCredentials)
        #expect(denied.status == 69 && denied.stderr.contains("AccessDenied"), "export with read-only credentials (a failed parallel upload): \(denied.stderr)")
        // One upload at a time and sixteen at once send the same chunks; the parallel bundle verifies and imports.
        func export(_ suffix: String, _ parallel: String) throws -> [String: Any] {
            let r = try box.kmsfs(["snapshot", "export", "demo", "s1", location + suffix, "--endpoint-url", seaweed.endpoint, "--parallel", parallel, "--json"])
            try #require(r.status == 0, "export --parallel \(parallel): \(r.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        }
        let serial = try export("-serial", "1"), parallel = try export("-parallel", "16")
        for field in ["chunks", "uploadedChunks", "uploadedBytes", "files"] {
            #expect(serial[field] as? Int == parallel[field] as? Int && (serial[field] as? Int ?? 0) > 0, "\(field): \(serial[field] ?? "-") vs \(parallel[field] ?? "-")")
        }
        let deep = try box.kmsfs(["snapshot", "verify", location + "-parallel", "--endpoint-url", seaweed.endpoint, "--deep"])
        #expect(deep.status == 0, "verify --deep of the parallel export: \(deep.stderr)")
        #expect(try box.kmsfs(["snapshot", "export", "demo", "s1", location + "-bad", "--endpoint-url", seaweed.endpoint, "--parallel", "0"]).status == 64)
    }

    @Test func rehydrateOnAnotherHostThroughVaultAcrossRotation() throws {
        guard Harness.fuseAvailable(), let bao = OpenBao.available() else { return }
        let key = "snap-\(UUID().uuidString.prefix(6).lowercased())"
        #expect(try bao.bao("write", "-f", "transit/keys/\(key)").status == 0)
        func setVault(_ box: Sandbox) throws {
            let tokenFile = box.root + "/token"
            try FileManager.default.createDirectory(atPath: box.root, withIntermediateDirectories: true)
            try bao.rootToken.write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let r = try box.kmsfs("security", "kms", "set", "vault", bao.address, key, "--token-file", tokenFile, "--ca-cert", bao.caCert)
            try #require(r.status == 0, "kms set: \(r.stderr)")
        }
        let source = try Sandbox()
        try setVault(source)
        let bundle = source.root + "/bundle"
        try source.exportDemo(to: bundle, files: ["report.txt": "rehydrated elsewhere\n"])

        // "Another host": a new home with only the KMS configured.
        let other = try Sandbox()
        let refused = try other.kmsfs("snapshot", "import", bundle, "restored")
        #expect(refused.status == 78 && refused.stderr.contains("wrapped by vault key"), "without a KMS configured: \(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: other.home + "/filesystems/restored"))
        try setVault(other)
        let imported = try other.kmsfs("snapshot", "import", bundle, "restored")
        try #require(imported.status == 0, "import on the other host: \(imported.stderr)")
        #expect(try other.kmsfs("mount", "restored", other.mountpoint).status == 0)
        #expect(try other.read("report.txt") == "rehydrated elsewhere\n")
        try other.umount()

        // The key rotates; the old bundle still rehydrates (transit keeps old versions)...
        #expect(try bao.bao("write", "-f", "transit/keys/\(key)/rotate").status == 0)
        #expect(try source.kmsfs("security", "kms", "rewrap").status == 0)
        let old = try other.kmsfs("snapshot", "import", bundle, "old-bundle")
        #expect(old.status == 0, "a bundle from before the rotation: \(old.stderr)")
        // ...and `snapshot rewrap` moves the bundle's wrapped key to the new version.
        let rewrap = try source.kmsfs("snapshot", "rewrap", bundle)
        #expect(rewrap.status == 0 && rewrap.stdout.contains("rewrapped 1 manifest"), "snapshot rewrap: \(rewrap.stdout) \(rewrap.stderr)")
        let manifest = String(decoding: FileManager.default.contents(atPath: bundle + "/manifests/s1.jsonl") ?? Data(), as: UTF8.self)
        let header = Harness.json(String(manifest.prefix { $0 != "\n" }))
        let superblock = Data(base64Encoded: header["superblock"] as? String ?? "") ?? Data()
        #expect(String(decoding: superblock.map { $0 >= 0x20 && $0 < 0x7f ? $0 : 0x2e }, as: UTF8.self).contains("vault:v2:"))
        #expect(try other.kmsfs("snapshot", "verify", bundle).status == 0)
        let after = try other.kmsfs("snapshot", "import", bundle, "after-rewrap")
        #expect(after.status == 0, "a rewrapped bundle: \(after.stderr)")
        #expect(try other.kmsfs("mount", "after-rewrap", other.mountpoint).status == 0)
        #expect(try other.read("report.txt") == "rehydrated elsewhere\n")
        try other.umount()

        // A KMS that does not have the key: refused, nothing created.
        #expect(try bao.bao("write", "-f", "transit/keys/\(key)-other").status == 0)
        let third = try Sandbox()
        let tokenFile = third.root + "/token"
        try FileManager.default.createDirectory(atPath: third.root, withIntermediateDirectories: true)
        try bao.rootToken.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        #expect(try third.kmsfs("security", "kms", "set", "vault", bao.address, "\(key)-other", "--token-file", tokenFile, "--ca-cert", bao.caCert).status == 0)
        let wrongKey = try third.kmsfs("snapshot", "import", bundle, "nope")
        #expect(wrongKey.status == 77 && wrongKey.stderr.contains("but the configured key is"), "import through a KMS with another key: \(wrongKey.stderr)")
        #expect(!FileManager.default.fileExists(atPath: third.home + "/filesystems/nope"))

        // The KMS no longer has the key at all (deleted in Vault): refused, nothing created.
        #expect(try bao.bao("write", "transit/keys/\(key)/config", "deletion_allowed=true").status == 0)
        #expect(try bao.bao("delete", "transit/keys/\(key)").status == 0)
        let gone = try other.kmsfs("snapshot", "import", bundle, "gone")
        #expect(gone.status == 78 && gone.stderr.contains("vault has no key '\(key)'"), "import after the key was deleted: \(gone.stderr)")
        #expect(!FileManager.default.fileExists(atPath: other.home + "/filesystems/gone"))
    }
}

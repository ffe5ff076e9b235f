import Foundation
import Testing

/// Snapshot bundles with real servers: S3 object stores (moto with signature
/// checking on, and SeaweedFS) and rehydration on "another host" (a second kmsfs home that
/// has only the KMS configuration) through OpenBao, across a key rotation.
@Suite(.serialized) struct SnapshotKMSTests {
    func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }

    func directory(_ box: Sandbox, _ name: String) throws -> String {
        let path = box.root + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func exportToS3AndRehydrateFromIt() throws {
        guard Harness.fuseAvailable(), let moto = Moto.available() else { return }
        let box = try Sandbox()
        box.env = moto.credentials
        try box.create()
        try box.mount()
        #expect(try Harness.shell("head -c 40000000 /dev/urandom > \(box.mountpoint)/large && cp -r \(Harness.packageRoot)/Sources/SnapExport \(box.mountpoint)/").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let location = "s3://\(moto.env["MOTO_BUCKET"]!)/\(UUID().uuidString.prefix(8))/demo"
        // 32 MiB chunks: the large file's first chunk goes up as a multipart upload.
        let export = try box.kmsfs("snapshot", "export", "demo", "s1", location, "--endpoint-url", moto.endpoint, "--chunk-size", "32M", "--json")
        try #require(export.status == 0, "export to S3: \(export.stderr)")
        let summary = json(export.stdout)
        #expect((summary["multipartUploads"] as? Int ?? 0) >= 1, "\(summary)")
        #expect((summary["uploadedBytes"] as? Int ?? 0) >= 40_000_000)
        let again = json(try box.kmsfs("snapshot", "export", "demo", "s1", location, "--endpoint-url", moto.endpoint, "--chunk-size", "32M", "--json").stdout)
        #expect(again["uploadedBytes"] as? Int == 0, "re-export sends nothing: \(again)")
        let verify = try box.kmsfs(["snapshot", "verify", location, "--endpoint-url", moto.endpoint], env: ["KMSFS_S3_RANGE_SIZE": "4096"])
        #expect(verify.status == 0, "verify on S3, manifest fetched in 4 KiB ranges: \(verify.stderr)")

        let imported = try box.kmsfs("snapshot", "import", location, "fromS3", "--endpoint-url", moto.endpoint)
        try #require(imported.status == 0, "import from S3: \(imported.stderr)")
        let view = try directory(box, "view"), copy = try directory(box, "copy")
        #expect(try box.kmsfs("snapshot", "mount", "demo", "s1", view).status == 0)
        #expect(try box.kmsfs("mount", "fromS3", copy).status == 0)
        let diff = try Harness.shell("diff -r \(view) \(copy)")
        #expect(diff.status == 0, "diff -r: \(diff.stdout.prefix(500))")
        #expect(try box.kmsfs("umount", view).status == 0)
        #expect(try box.kmsfs("umount", copy).status == 0)
        try box.umount()

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
        try box.create()
        try box.mount()
        #expect(try Harness.shell("head -c 40000000 /dev/urandom > \(box.mountpoint)/large && cp -r \(Harness.packageRoot)/Sources/MetaStore \(box.mountpoint)/").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let location = "s3://\(seaweed.bucket)/\(UUID().uuidString.prefix(8))/demo"
        let export = try box.kmsfs("snapshot", "export", "demo", "s1", location, "--endpoint-url", seaweed.endpoint, "--chunk-size", "32M", "--json")
        try #require(export.status == 0, "export to SeaweedFS: \(export.stderr)")
        let summary = json(export.stdout)
        #expect((summary["multipartUploads"] as? Int ?? 0) >= 1, "\(summary)")
        let again = json(try box.kmsfs("snapshot", "export", "demo", "s1", location, "--endpoint-url", seaweed.endpoint, "--chunk-size", "32M", "--json").stdout)
        #expect(again["uploadedBytes"] as? Int == 0, "re-export sends nothing: \(again)")
        // The read-only identity can verify but not write.
        // (The manifest is fetched in 4 KiB ranges here, as a large one would be in 8 MiB ones.)
        let verify = try box.kmsfs(["snapshot", "verify", location, "--endpoint-url", seaweed.endpoint],
                                   env: seaweed.readOnlyCredentials.merging(["KMSFS_S3_RANGE_SIZE": "4096"]) { $1 })
        #expect(verify.status == 0, "verify with read-only credentials: \(verify.stderr)")
        let denied = try box.kmsfs(["snapshot", "export", "demo", "s1", location + "-ro", "--endpoint-url", seaweed.endpoint], env: seaweed.readOnlyCredentials)
        #expect(denied.status == 69 && denied.stderr.contains("AccessDenied"), "export with read-only credentials: \(denied.stderr)")

        let imported = try box.kmsfs("snapshot", "import", location, "fromSeaweed", "--endpoint-url", seaweed.endpoint)
        try #require(imported.status == 0, "import from SeaweedFS: \(imported.stderr)")
        let view = try directory(box, "view"), copy = try directory(box, "copy")
        #expect(try box.kmsfs("snapshot", "mount", "demo", "s1", view).status == 0)
        #expect(try box.kmsfs("mount", "fromSeaweed", copy).status == 0)
        let diff = try Harness.shell("diff -r \(view) \(copy)")
        #expect(diff.status == 0, "diff -r: \(diff.stdout.prefix(500))")
        #expect(try box.kmsfs("umount", view).status == 0)
        #expect(try box.kmsfs("umount", copy).status == 0)
        try box.umount()
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
        try source.create()
        try source.mount()
        try source.write("report.txt", "rehydrated elsewhere\n")
        try source.umount()
        #expect(try source.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let bundle = source.root + "/bundle"
        #expect(try source.kmsfs("snapshot", "export", "demo", "s1", bundle).status == 0)

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
        let header = json(String(manifest.prefix { $0 != "\n" }))
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

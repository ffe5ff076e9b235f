import Foundation
import Testing

/// `kmsfs security kms set aws` against moto's AWS KMS with signature checking
/// on: the Kasten workflow (customer-managed key behind an alias, automatic and
/// manual rotation, rewrap), key states, and credential failures.
@Suite(.serialized) struct AWSKMSTests {
    func sandbox(_ moto: Moto) throws -> Sandbox {
        let box = try Sandbox()
        box.env = moto.credentials
        return box
    }

    @Test func lifecycleWithAutomaticAndManualRotation() throws {
        guard Harness.fuseAvailable(), let moto = Moto.available() else { return }
        let box = try sandbox(moto)
        let set = try box.kmsfs("security", "kms", "set", "aws", moto.endpoint, "alias/kmsfs")
        try #require(set.status == 0, "set: \(set.stderr)")
        #expect(set.stdout.contains("round trip ok"))
        try box.create()
        #expect(try box.keyOf() == moto.keyARN, "the envelope records the key ARN behind the alias")
        try box.mount()
        try box.write("a.txt", "survives two rotations\n")
        try box.umount()

        // Automatic rotation: new key material, same key; rewrap re-encrypts inside KMS.
        try moto.admin("rotate", moto.keyARN)
        let auto = try box.kmsfs("security", "kms", "rewrap")
        #expect(auto.status == 0, "rewrap: \(auto.stderr)")
        #expect(auto.stdout.contains("rewrapped 1 filesystem key(s)"))
        try box.mount()
        #expect(try box.read("a.txt") == "survives two rotations\n")
        try box.umount()

        // Manual rotation: a new key, the alias moved to it, then rewrap.
        let newARN = try moto.admin("create-key")
        try moto.admin("update-alias", "alias/kmsfs", newARN)
        let manual = try box.kmsfs("security", "kms", "rewrap")
        #expect(manual.status == 0, "rewrap: \(manual.stderr)")
        #expect(try box.keyOf() == newARN, "after the alias moved, the key is wrapped by the new key")
        try box.mount()
        #expect(try box.read("a.txt") == "survives two rotations\n")
        try box.umount()

        // A disabled key: mount refuses, clearly, and works again once enabled.
        try moto.admin("disable", newARN)
        let refused = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(refused.status == 78, "mount with a disabled key: \(refused.stderr)")
        #expect(refused.stderr.contains("\(newARN) cannot be used: its state is Disabled"), "\(refused.stderr)")
        try moto.admin("enable", newARN)
        try moto.admin("schedule-deletion", newARN)
        let pending = try box.kmsfs("mount", "demo", box.mountpoint)
        #expect(pending.status == 78)
        #expect(pending.stderr.contains("PendingDeletion"), "\(pending.stderr)")
        try moto.admin("cancel-deletion", newARN)

        // --new-key-uid moves to another key explicitly and becomes the configured key.
        let third = try moto.admin("create-key")
        let explicit = try box.kmsfs("security", "kms", "rewrap", "--new-key-uid", third)
        #expect(explicit.status == 0, "rewrap --new-key-uid: \(explicit.stderr)")
        #expect(explicit.stdout.contains("keep the old key"))
        #expect(try box.keyOf() == third)
        let show = try box.kmsfs("security", "kms", "--json")
        let object = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any]
        #expect(object?["key"] as? String == third)
        #expect(object?["key_state"] as? String == "Enabled")
        #expect(!show.stdout.contains(moto.env["MOTO_SECRET_ACCESS_KEY"]!))
        try box.mount()
        #expect(try box.read("a.txt") == "survives two rotations\n")
        try box.umount()
        // Credentials stay out of the home unless asked for.
        let config = (try? String(contentsOfFile: box.home + "/kms.json", encoding: .utf8)) ?? ""
        #expect(!config.contains(moto.env["MOTO_SECRET_ACCESS_KEY"]!) && !config.contains("sealedCredentials"))
    }

    @Test func credentialFailuresAreNamedAndChangeNothing() throws {
        guard let moto = Moto.available() else { return }
        let box = try sandbox(moto)
        try box.create()
        func expectRefused(_ env: [String: String], key: String = "alias/kmsfs", code: Int32, _ message: String,
                           sourceLocation: SourceLocation = #_sourceLocation) throws {
            let r = try box.kmsfs(["security", "kms", "set", "aws", moto.endpoint, key], env: env)
            #expect(r.status == code, "exit \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.contains(message), "\(r.stderr)", sourceLocation: sourceLocation)
            #expect(r.stderr.split(separator: "\n").count == 1, sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: box.home + "/kms.json"), sourceLocation: sourceLocation)
        }
        // moto checks signatures here: a wrong secret must be refused, or the signer is untested.
        try expectRefused(["AWS_SECRET_ACCESS_KEY": "wrong-secret"], code: 77, "SignatureDoesNotMatch")
        try expectRefused(["AWS_ACCESS_KEY_ID": moto.env["MOTO_DENIED_ACCESS_KEY_ID"]!,
                           "AWS_SECRET_ACCESS_KEY": moto.env["MOTO_DENIED_SECRET_ACCESS_KEY"]!], code: 77, "denied DescribeKey")
        try expectRefused([:], key: "alias/no-such-alias", code: 78, "has no key 'alias/no-such-alias'")
        try expectRefused(["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                           "AWS_CONFIG_FILE": "/nonexistent"], code: 77, "no AWS credentials found")
        // A profile in a shared credentials file works without any AWS_* variables.
        let credentials = box.root + "/credentials"
        try "[ci]\naws_access_key_id = \(moto.env["MOTO_ACCESS_KEY_ID"]!)\naws_secret_access_key = \(moto.env["MOTO_SECRET_ACCESS_KEY"]!)\n"
            .write(toFile: credentials, atomically: true, encoding: .utf8)
        let viaProfile = try box.kmsfs(["security", "kms", "set", "aws", moto.endpoint, "alias/kmsfs", "--profile", "ci"],
                                       env: ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": credentials])
        #expect(viaProfile.status == 0, "set --profile: \(viaProfile.stderr)")
        #expect(try box.keyOf().hasPrefix("arn:aws:kms:us-east-1:123456789012:key/"), "the local filesystem key moved to AWS KMS")
    }
}

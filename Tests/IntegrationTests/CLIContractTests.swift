import Foundation
import Testing

/// The scripting contract of docs/CLI.md: help, version, exit codes, JSON.
@Suite("CLI contract")
struct CLIContractTests {
    @Test("--help lists the commands; --version prints the version")
    func helpAndVersion() throws {
        let help = try Harness.run(Harness.binary, ["--help"])
        #expect(help.status == 0)
        for command in ["fs", "mount", "umount"] { #expect(help.stdout.contains(command)) }
        #expect(try Harness.run(Harness.binary, ["fs", "create", "--help"]).stdout.contains("--passphrase-file"))
        #expect(try Harness.run(Harness.binary, ["mount", "--help"]).stdout.contains("--foreground"))
        let version = try Harness.run(Harness.binary, ["--version"])
        #expect(version.status == 0 && version.stdout.range(of: #"^\d+\.\d+\.\d+"#, options: .regularExpression) != nil)
    }

    @Test("plain http:// to a host that is not a loopback address is refused unless --insecure-http")
    func plainHTTP() throws {
        let box = try Sandbox()
        let token = box.root + "/token"
        try "s.token".write(toFile: token, atomically: false, encoding: .utf8)
        let vault = try box.kmsfs("security", "kms", "set", "vault", "http://vault.example.com:8200", "k", "--token-file", token)
        #expect(vault.status == 64 && vault.stderr.contains("refusing plain http:// to vault.example.com") && vault.stderr.contains("--insecure-http"),
                "\(vault.status) \(vault.stderr)")
        let aws = try box.kmsfs("security", "kms", "set", "aws", "http://kms.example.com", "alias/k", env: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])
        #expect(aws.status == 64 && aws.stderr.contains("refusing plain http://"), "\(aws.status) \(aws.stderr)")
        let trick = try box.kmsfs("security", "kms", "set", "vault", "http://evil.example#@127.0.0.1", "k", "--token-file", token)
        #expect(trick.status == 64, "an address that hides its host: \(trick.status) \(trick.stderr)")
        #expect(!FileManager.default.fileExists(atPath: box.home + "/kms.json"), "nothing was configured")
        let s3 = try box.kmsfs("snapshot", "verify", "s3://bucket/p", "--endpoint-url", "http://s3.example.com", env: ["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"])
        #expect(s3.status == 64 && s3.stderr.contains("refusing plain http:// to s3.example.com"), "\(s3.status) \(s3.stderr)")
    }

    @Test("bad arguments exit 64 with a one-line reason")
    func usageErrors() throws {
        let box = try Sandbox()
        #expect(try Harness.run(Harness.binary, ["fs", "bogus"]).status == 64)
        #expect(try Harness.run(Harness.binary, ["mount", "onlyone"]).status == 64)
        let badName = try box.kmsfs("fs", "create", "../evil")
        #expect(badName.status == 64 && badName.stderr.contains("invalid filesystem name"), "\(badName.stderr)")
        try box.create()
        let twice = try box.kmsfs("fs", "create", "demo")
        #expect(twice.status == 64 && twice.stderr.contains("already exists"))
        let noConfirm = try box.kmsfs("fs", "delete", "demo")
        #expect(noConfirm.status == 64 && noConfirm.stderr.contains("--yes"))
        let missing = try box.kmsfs("mount", "nothere", box.mountpoint)
        #expect(missing.status == 66 && missing.stderr.contains("no kmsfs store"), "\(missing.stderr)")
        let notMounted = try box.kmsfs("umount", box.mountpoint)
        #expect(notMounted.status == 64)

        // Snapshot commands.
        let badSnap = try box.kmsfs("snapshot", "create", "demo", "../x")
        #expect(badSnap.status == 64 && badSnap.stderr.contains("invalid snapshot name"), "\(badSnap.stderr)")
        let noFS = try box.kmsfs("snapshot", "create", "nothere", "s")
        #expect(noFS.status == 66, "\(noFS.stderr)")
        #expect(try box.kmsfs("snapshot", "create", "demo", "s").status == 0)
        for size in ["3M", "32K", "512M", "x"] {
            let bad = try box.kmsfs("snapshot", "export", "demo", "s", box.root + "/b", "--chunk-size", size)
            #expect(bad.status == 64 && bad.stderr.contains("chunk-size"), "--chunk-size \(size): \(bad.stderr)")
        }
        let sameBase = try box.kmsfs("snapshot", "export", "demo", "s", box.root + "/b", "--base", "s")
        #expect(sameBase.status == 64, "\(sameBase.stderr)")
        let endpointLocal = try box.kmsfs("snapshot", "export", "demo", "s", box.root + "/b", "--endpoint-url", "http://127.0.0.1:1")
        #expect(endpointLocal.status == 64 && endpointLocal.stderr.contains("only for s3://"), "\(endpointLocal.stderr)")
        let noBundle = try box.kmsfs("snapshot", "import", box.root + "/nothing", "x")
        #expect(noBundle.status == 66 && noBundle.stderr.contains("no bundle at"), "\(noBundle.stderr)")
        let notABundle = try box.kmsfs("snapshot", "verify", box.root)
        #expect(notABundle.status == 66 && notABundle.stderr.contains("no snapshot bundle"), "\(notABundle.stderr)")
        let help = try box.kmsfs("snapshot", "--help")
        for command in ["create", "list", "delete", "mount", "export", "import", "verify", "rewrap"] { #expect(help.stdout.contains(command)) }
    }

    @Test("fs list --json describes each filesystem; fs delete removes it")
    func listJSON() throws {
        let box = try Sandbox()
        try box.create("alpha")
        try box.create("beta")
        let r = try box.kmsfs("fs", "list", "--json")
        #expect(r.status == 0)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: String]])
        #expect(rows.map { $0["name"] } == ["alpha", "beta"])
        #expect(rows.allSatisfy { $0["kms"] == "local" && $0["key"] == "keyfile" && $0["uuid"]?.count == 36 && $0["mounted"] == "" })
        #expect(try box.kmsfs("fs", "delete", "alpha", "--yes").status == 0)
        #expect(try box.kmsfs("fs", "list").stdout.contains("alpha") == false)
        let key = try FileManager.default.attributesOfItem(atPath: box.home + "/local.key")
        #expect((key[.posixPermissions] as? Int) == 0o600)
    }

    @Test("kmsfs speed reports encrypt and decrypt MB/s for one thread and all cores")
    func speed() throws {
        let r = try Harness.run(Harness.binary, ["speed", "--seconds", "0.2"])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("AES-256-XTS") }
        #expect(lines.count == 4)
        let rates = lines.compactMap { Double($0.split(separator: ":").last!.replacingOccurrences(of: "MB/s", with: "").trimmingCharacters(in: .whitespaces)) }
        #expect(rates.count == 4 && rates.allSatisfy { $0 > 10 }, "\(r.stdout)")
    }

    @Test("store files are private (umask 077)")
    func privateStore() throws {
        let box = try Sandbox()
        try box.create()
        let modes = try FileManager.default.contentsOfDirectory(atPath: box.store).compactMap { name -> Int? in
            (try FileManager.default.attributesOfItem(atPath: box.store + "/" + name)[.posixPermissions] as? Int)
        }
        #expect(!modes.isEmpty && modes.allSatisfy { $0 & 0o077 == 0 }, "\(modes.map { String($0, radix: 8) })")
    }
}

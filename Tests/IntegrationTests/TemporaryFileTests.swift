import Foundation
import Testing

/// Temporary files of root's kmsfs against a local user who can write the
/// temporary directory (here a $TMPDIR owned by nobody, where the kernel's
/// protected_symlinks does not apply), and names from listings.
@Suite struct TemporaryFileTests {
    @Test func plantedSymlinksInTmpdirAreNeverFollowed() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        let tar = box.root + "/b.tar"
        try box.exportDemo(to: tar, files: ["a": "data"])
        let tmp = try box.directory("tmp")
        #expect(chown(tmp, 65534, 65534) == 0 && chmod(tmp, 0o777) == 0)
        let victim = box.root + "/victim"
        try "root's secret\n".write(toFile: victim, atomically: false, encoding: .utf8)
        chmod(victim, 0o600)
        chmod(box.root, 0o755)
        // nobody plants links for the next few hundred pids under the names the old code used.
        let last = Int((try String(contentsOfFile: "/proc/sys/kernel/ns_last_pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        let plant = try asNobody("for p in $(seq \(last + 1) \(last + 400)); do ln -s \(victim) \(tmp)/kmsfs-manifest-$p-fetch-s1.jsonl; done")
        #expect(plant.status == 0, "\(plant.stderr)")
        let r = try box.kmsfs("snapshot", "verify", tar, env: ["TMPDIR": tmp + "/"])
        #expect(r.status == 0, "verify: \(r.stderr)")
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "root's secret\n", "the victim was overwritten")
        let left = try FileManager.default.contentsOfDirectory(atPath: tmp).filter { !$0.hasPrefix("kmsfs-manifest-") }
        #expect(left.isEmpty, "temporary files left behind: \(left)")
    }

    @Test func snapshotNamesFromAListingAreValidated() throws {
        guard let moto = Moto.available() else { return }
        let box = try Sandbox()
        box.env = moto.credentials
        let bucket = moto.env["MOTO_BUCKET"]!, prefix = "evil-\(UUID().uuidString.prefix(8))"
        // Keys that name no valid snapshot: one climbs out of any directory it is joined to.
        for key in ["manifests/../../../tmp/kmsfs-evil.jsonl", "manifests/.hidden.jsonl", "manifests/a b.jsonl"] {
            try moto.admin("put-object", bucket, prefix + "/" + key, #"{"format":"kmsfs-snapshot"}"#)
        }
        let r = try box.kmsfs("snapshot", "verify", "s3://\(bucket)/\(prefix)", "--endpoint-url", moto.endpoint)
        #expect(r.status == 66 && r.stderr.contains("no snapshot bundle at"), "exit \(r.status): \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/kmsfs-evil.jsonl"))
    }

    @Test func symlinkedChunkDirectoriesInADirectoryBundleAreRefused() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        chmod(box.root, 0o755)
        let bundle = try box.directory("shared-bundle"), victim = try box.directory("victim")
        #expect(chown(bundle, 65534, 65534) == 0)
        // nobody, who may write the bundle directory, points every chunks/XX at a directory of root's.
        let plant = try asNobody("mkdir \(bundle)/chunks && for i in $(seq 0 255); do ln -s \(victim) \(bundle)/chunks/$(printf %02x $i); done")
        #expect(plant.status == 0, "\(plant.stderr)")
        try box.create()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let r = try box.kmsfs("snapshot", "export", "demo", "s1", bundle)
        #expect(r.status == 65 && r.stderr.contains("is not a directory"), "exit \(r.status): \(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: victim).isEmpty, "chunks were written through the symlink")
    }
}

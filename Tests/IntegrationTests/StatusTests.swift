import Foundation
import Testing

/// `kmsfs status` of a running mount, from its daemon: I/O, open files,
/// errors by errno, snapshots, the key, the daemon's memory and threads; the
/// same as Prometheus text, and kept in a file by `mount --metrics`.
@Suite struct StatusTests {
    @Test func statusJSONPrometheusAndMetricsFile() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        // One inode with an impossible size: a stat of it is an EIO the status must count.
        try box.demoWithImpossibleSize()
        let metrics = box.root + "/kmsfs.prom"
        try box.mount("demo", ["--metrics", metrics])
        #expect(try Harness.shell("dd if=/dev/urandom of=\(box.mountpoint)/f bs=64k count=16 conv=fsync status=none").status == 0)
        var st = stat()
        #expect(stat(box.mountpoint + "/victim", &st) != 0 && errno == EIO)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        // A file held open while we look.
        let holder = try Harness.launch("/usr/bin/python3", ["-c", "import time; f = open('\(box.mountpoint)/f'); time.sleep(8)"])
        defer { holder.terminate() }
        usleep(500_000)

        let r = try box.kmsfs("status", "demo", "--json")
        #expect(r.status == 0, "\(r.stderr)")
        let report = (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])?.first ?? [:]
        func int(_ path: String...) -> Int {
            var v: Any? = report
            for k in path { v = (v as? [String: Any])?[k] }
            return v as? Int ?? -1
        }
        #expect(report["filesystem"] as? String == "demo" && report["mountpoint"] as? String == box.mountpoint)
        #expect(int("writes", "bytes") >= 1 << 20 && int("writes", "operations") >= 1, "\(report)")
        #expect(int("eio") >= 1 && int("errors", "EIO") >= 1, "the EIO is counted: \(report["errors"] ?? "")")
        #expect(int("openFiles") >= 1 && int("snapshots") == 1)
        #expect(int("process", "rssBytes") > 1 << 20 && int("process", "threads") > 1)
        #expect((report["kms"] as? [String: Any])?["type"] as? String == "local" && int("uptimeSeconds") >= 0)

        let text = try box.kmsfs("status")
        #expect(text.status == 0 && text.stdout.contains("EIO") && text.stdout.contains(box.mountpoint), "\(text.stdout)")
        let prom = try box.kmsfs("status", "--prometheus")
        #expect(prom.stdout.contains("# TYPE kmsfs_write_bytes_total counter"), "\(prom.stdout)")
        #expect(prom.stdout.contains("kmsfs_errors_total{filesystem=\"demo\",errno=\"EIO\"}") && prom.stdout.contains("kmsfs_info{filesystem=\"demo\""))
        // Every sample line is `name{labels} integer`.
        for line in prom.stdout.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.range(of: #"^kmsfs_[a-z_]+\{[^}]*\} -?[0-9]+$"#, options: .regularExpression) != nil, "\(line)")
        }
        for _ in 0..<40 where !FileManager.default.fileExists(atPath: metrics) { usleep(250_000) }
        let file = (try? String(contentsOfFile: metrics, encoding: .utf8)) ?? ""
        #expect(file.contains("kmsfs_write_bytes_total{filesystem=\"demo\"}"), "metrics file: \(file)")
        let mode = (try? FileManager.default.attributesOfItem(atPath: metrics)[.posixPermissions] as? Int) ?? 0
        #expect(mode == 0o644, "readable by the collector: \(String(mode, radix: 8))")

        let missing = try box.kmsfs("status", "nothere")
        #expect(missing.status == 66 && missing.stderr.contains("not a mounted filesystem"), "\(missing.stderr)")
        holder.terminate()
        holder.waitUntilExit()
        try box.umount()
    }

    @Test func aMountPointGivenWithASlashOrASymlinkIsStillFound() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let link = box.root + "/via-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: box.mountpoint)
        for spelling in [box.mountpoint + "/", link, box.root + "/./mnt"] {
            let r = try box.kmsfs("mount", "demo", spelling)
            try #require(r.status == 0, "mount \(spelling): \(r.stderr)")
            let list = try JSONSerialization.jsonObject(with: Data(try box.kmsfs("fs", "list", "--json").stdout.utf8)) as? [[String: String]] ?? []
            #expect(list.first?["mounted"] == box.mountpoint, "\(spelling): \(list)")
            #expect(try box.kmsfs("status", spelling).status == 0, "status \(spelling)")
            let delete = try box.kmsfs("fs", "delete", "demo", "--yes")
            #expect(delete.status == 64 && FileManager.default.fileExists(atPath: box.store), "delete of a mounted filesystem: \(delete.stderr)")
            #expect(try box.kmsfs("umount", spelling).status == 0, "umount \(spelling)")
            #expect(!MountInfo.isMounted(box.mountpoint))
        }
    }
}

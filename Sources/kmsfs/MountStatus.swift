import Foundation
import FuseFrontend
import KeyVault
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// What `kmsfs status` shows of a running mount, built by its daemon and sent
/// over the control socket as one JSON line; also as Prometheus text, for
/// node_exporter's textfile collector (`status --prometheus`, `mount --metrics`).
struct MountStatus {
    static let verb = "status"
    private static let metricsStopped = Locked(false)

    /// At unmount: the metrics file goes, so a collector does not keep reporting a mount that is gone.
    static func removeMetricsFile(_ path: String) {
        metricsStopped.withLock { stopped in
            stopped = true
            unlink(path)
        }
    }

    let name: String
    let store: StorePaths
    let superblock: Superblock
    let unlockedBy: String
    /// The passkeys whose keyslots unlocked the key, and those tried that failed.
    let passkeys: [String]
    let failedPasskeys: [String]
    let mountpoint: String
    let readOnly: Bool
    let fileSystem: FileSystem
    let started = time(nil)

    /// The daemon's answer (JSON-compatible values only).
    func report() -> [String: Any] {
        let c = fileSystem.activity.counters
        var errors: [String: Int] = [:]
        for (code, count) in c.errors { errors[Self.errnoName(code)] = count }
        var object: [String: Any] = [
            "filesystem": name, "uuid": superblock.uuidString, "mountpoint": mountpoint, "pid": Int(getpid()),
            "startedAt": AuditLog.timestamp(at: started), "uptimeSeconds": Int(time(nil) - started), "readOnly": readOnly,
            "kms": ["type": superblock.kms.type, "key": superblock.kms.keyIdentifier, "keyVersion": superblock.kms.keyVersion, "unlockedBy": unlockedBy,
                    "passkeys": passkeys, "failedPasskeys": failedPasskeys],
            "reads": ["operations": c.readOperations, "bytes": c.readBytes],
            "writes": ["operations": c.writeOperations, "bytes": c.writeBytes],
            "openFiles": c.openFiles, "errors": errors, "eio": c.errors[EIO] ?? 0,
            "integrity": superblock.integrityMode, "integrityFailures": c.integrityFailures,
            "snapshots": (try? SnapshotManager(store: store).list().count) ?? 0,
        ]
        let process = Self.processFacts()
        object["process"] = ["rssBytes": process.rss, "threads": process.threads]
        if let token = TokenRenewer.state.withLock({ $0 }) {
            var t: [String: Any] = ["ttlSeconds": token.ttl, "checkedAt": AuditLog.timestamp(at: token.checked)]
            if let renewed = token.renewed { t["lastRenewal"] = AuditLog.timestamp(at: renewed) }
            if let failure = token.failure { t["lastFailure"] = failure }
            object["token"] = t
        }
        return object
    }

    /// Resident memory and thread count from /proc/self/status.
    static func processFacts() -> (rss: Int, threads: Int) {
        let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
            return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? 0
        }
        return (field("VmRSS") * 1024, field("Threads"))
    }

    static func errnoName(_ code: Int32) -> String {
        let names: [Int32: String] = [EIO: "EIO", ENOENT: "ENOENT", EACCES: "EACCES", EPERM: "EPERM", EEXIST: "EEXIST", ENOSPC: "ENOSPC",
                                      ENOTEMPTY: "ENOTEMPTY", ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", EROFS: "EROFS",
                                      ENODATA: "ENODATA", ERANGE: "ERANGE", EXDEV: "EXDEV", ENAMETOOLONG: "ENAMETOOLONG", EFBIG: "EFBIG",
                                      EMLINK: "EMLINK", ENOSYS: "ENOSYS", EOPNOTSUPP: "EOPNOTSUPP", EBADF: "EBADF", EDQUOT: "EDQUOT"]
        return names[code] ?? "errno\(code)"
    }

    /// Prometheus text exposition of one or more reports.
    static func prometheus(_ reports: [[String: Any]]) -> String {
        var families: [(name: String, type: String, help: String, samples: [String])] = []
        func family(_ name: String, _ type: String, _ help: String, _ value: ([String: Any]) -> [(labels: String, value: Int)]) {
            var samples: [String] = []
            for r in reports {
                let base = "filesystem=\"\(Self.escape(r["filesystem"] as? String ?? ""))\""
                for (labels, v) in value(r) { samples.append("kmsfs_\(name){\(base)\(labels.isEmpty ? "" : "," + labels)} \(v)") }
            }
            families.append((name, type, help, samples))
        }
        func int(_ r: [String: Any], _ path: String...) -> Int {
            var value: Any? = r
            for key in path { value = (value as? [String: Any])?[key] }
            return value as? Int ?? 0
        }
        family("info", "gauge", "The mount, its key and how it was unlocked (always 1).") { r in
            let kms = r["kms"] as? [String: Any] ?? [:]
            let labels = ["uuid": r["uuid"], "mountpoint": r["mountpoint"], "kms": kms["type"], "key": kms["key"], "key_version": kms["keyVersion"], "unlocked_by": kms["unlockedBy"]]
                .sorted { $0.key < $1.key }.map { "\($0.key)=\"\(Self.escape("\($0.value ?? "")"))\"" }.joined(separator: ",")
            return [(labels, 1)]
        }
        family("uptime_seconds", "gauge", "Seconds since the mount started.") { [("", int($0, "uptimeSeconds"))] }
        family("read_operations_total", "counter", "Read requests served.") { [("", int($0, "reads", "operations"))] }
        family("read_bytes_total", "counter", "Plaintext bytes read.") { [("", int($0, "reads", "bytes"))] }
        family("write_operations_total", "counter", "Write requests served.") { [("", int($0, "writes", "operations"))] }
        family("write_bytes_total", "counter", "Plaintext bytes written.") { [("", int($0, "writes", "bytes"))] }
        family("errors_total", "counter", "Requests answered with an error, by errno.") { r in
            (r["errors"] as? [String: Int] ?? [:]).sorted { $0.key < $1.key }.map { ("errno=\"\($0.key)\"", $0.value) }
        }
        family("eio_total", "counter", "Requests answered with EIO.") { [("", int($0, "eio"))] }
        family("integrity_failures_total", "counter", "Requests that met a data unit or metadata row that did not verify (tampered or damaged store).") {
            [("", int($0, "integrityFailures"))]
        }
        family("open_files", "gauge", "Files open now.") { [("", int($0, "openFiles"))] }
        family("snapshots", "gauge", "Snapshots of the filesystem.") { [("", int($0, "snapshots"))] }
        family("resident_bytes", "gauge", "Resident memory of the mount daemon.") { [("", int($0, "process", "rssBytes"))] }
        family("threads", "gauge", "Threads of the mount daemon.") { [("", int($0, "process", "threads"))] }
        family("token_ttl_seconds", "gauge", "TTL of the Vault token at its last check or renewal.") { r in
            r["token"] == nil ? [] : [("", int(r, "token", "ttlSeconds"))]
        }
        var out = ""
        for f in families where !f.samples.isEmpty {
            out += "# HELP kmsfs_\(f.name) \(f.help)\n# TYPE kmsfs_\(f.name) \(f.type)\n" + f.samples.joined(separator: "\n") + "\n"
        }
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// The report as the one-line answer of the control socket.
    func answer() -> String {
        let data = (try? JSONSerialization.data(withJSONObject: report(), options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Keeps `path` up to date with the Prometheus text every `interval` seconds (written
    /// beside it and renamed, mode 0644, so the collector never reads half a file).
    func startMetricsFile(_ path: String, interval: UInt32 = 5) {
        let thread = Thread {
            while !Self.metricsStopped.withLock({ $0 }) {
                let bytes = Array(Self.prometheus([report()]).utf8)
                // Under the lock, so an unmount's removal is never undone by a write in flight.
                Self.metricsStopped.withLock { stopped in
                    if !stopped { try? AtomicFile.write(bytes, to: path, mode: 0o644) }
                }
                sleep(interval)
            }
        }
        thread.name = "kmsfs-metrics"
        thread.start()
    }
}

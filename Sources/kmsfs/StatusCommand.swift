import ArgumentParser
import Foundation
import MetaStore
import SnapExport

/// `kmsfs status [MOUNTPOINT|NAME] [--json|--prometheus]`: a running mount's
/// health, from its daemon over the control socket.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show mounted filesystems: uptime, I/O, errors by errno, open files, the key that unlocked them, token TTL, snapshots, daemon memory and threads.",
        discussion: "Without an argument, every mounted filesystem of the home. Exit 66 when the one named is not mounted."
    )

    @OptionGroup var homeOptions: HomeOptions
    @Argument(help: "Mount point, or filesystem name (default: all mounted).") var target: String?
    @Flag(help: "Print a JSON array.") var json = false
    @Flag(help: "Print Prometheus text exposition (for node_exporter's textfile collector).") var prometheus = false

    func run() throws {
        try userErrors {
            let home = homeOptions.resolved
            let table = MountTable.current()
            var stores: [String] = []
            for name in home.filesystemNames() {
                let root = home.store(name).root
                guard let mountpoint = table.mountpoints(ofStore: root).first else { continue }
                if let target, target != name, Home.mountPath(target) != mountpoint { continue }
                stores.append(root)
            }
            if let target, stores.isEmpty {
                throw UserFacingError("\(target) is not a mounted filesystem of \(home.path)", hint: "'kmsfs fs list' shows where they are mounted", exitCode: ExitCodes.notFound)
            }
            // One daemon that does not answer (busy with a snapshot, hung) costs its own entry, not the others'.
            var failures: [String] = []
            let reports: [[String: Any]] = stores.compactMap { root in
                do {
                    let text = try ControlChannel.request(storeRoot: root, MountStatus.verb, "", timeout: 10)
                    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                        throw UserFacingError("the mount daemon of \(root) sent an unreadable status", exitCode: ExitCodes.internalError)
                    }
                    return object
                } catch {
                    failures.append("\((root as NSString).lastPathComponent): \(UserFacingError.from(error).message)")
                    return nil
                }
            }
            if prometheus {
                writeStdout(MountStatus.prometheus(reports))
            } else if json {
                let data = try JSONSerialization.data(withJSONObject: reports, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                writeStdout(String(decoding: data, as: UTF8.self) + "\n")
            } else {
                for r in reports { writeStdout(Self.text(r)) }
                if reports.isEmpty && failures.isEmpty { writeStdout("no filesystem of \(home.path) is mounted\n") }
            }
            if !failures.isEmpty {
                throw UserFacingError("no status from " + failures.joined(separator: "; "), exitCode: ExitCodes.mountFailed)
            }
        }
    }

    static func text(_ r: [String: Any]) -> String {
        func sub(_ key: String) -> [String: Any] { r[key] as? [String: Any] ?? [:] }
        let kms = sub("kms"), reads = sub("reads"), writes = sub("writes"), process = sub("process")
        let errors = (r["errors"] as? [String: Int] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        var rows: [(String, String)] = [
            ("filesystem", "\(r["filesystem"] ?? "") (\(r["uuid"] ?? ""))"),
            ("mounted at", "\(r["mountpoint"] ?? "")\((r["readOnly"] as? Bool) == true ? " (read-only)" : ""), since \(r["startedAt"] ?? ""), up \(r["uptimeSeconds"] ?? 0) s"),
            ("key", "\(kms["type"] ?? "") \(kms["key"] ?? "")\((kms["keyVersion"] as? String).map { $0.isEmpty ? "" : " v\($0)" } ?? ""), unlocked by \(kms["unlockedBy"] ?? "")"
                + ((kms["passkeys"] as? [String]).map { $0.isEmpty ? "" : " (passkey \($0.joined(separator: ", ")))" } ?? "")
                + ((kms["failedPasskeys"] as? [String]).map { $0.isEmpty ? "" : "; did not answer: \($0.joined(separator: ", "))" } ?? "")),
            ("reads", "\(reads["operations"] ?? 0) operations, \(humanBytes(UInt64(reads["bytes"] as? Int ?? 0)))"),
            ("writes", "\(writes["operations"] ?? 0) operations, \(humanBytes(UInt64(writes["bytes"] as? Int ?? 0)))"),
            ("errors", "EIO \(r["eio"] ?? 0); all: \(errors.isEmpty ? "none" : errors.joined(separator: ", "))"),
            ("integrity", "\(r["integrity"] ?? "?")" + ((r["integrity"] as? String) == "on" ? ", \(r["integrityFailures"] ?? 0) failure(s) since mount" : " (XTS only: edits to the store are not detected)")),
            ("open files", "\(r["openFiles"] ?? 0)"),
            ("snapshots", "\(r["snapshots"] ?? 0)"),
            ("daemon", "pid \(r["pid"] ?? ""), \(humanBytes(UInt64(process["rssBytes"] as? Int ?? 0))) resident, \(process["threads"] ?? 0) threads"),
        ]
        if let token = r["token"] as? [String: Any] {
            rows.append(("vault token", "ttl \(token["ttlSeconds"] ?? 0) s at \(token["checkedAt"] ?? "")" + (token["lastRenewal"].map { ", renewed \($0)" } ?? "")
                         + (token["lastFailure"].map { ", last failure: \($0)" } ?? "")))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 + "\n" }.joined() + "\n"
    }
}

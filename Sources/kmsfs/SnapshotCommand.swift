import ArgumentParser
import Foundation
import MetaStore

/// `kmsfs snapshot ...`: point-in-time read-only views of a filesystem, and
/// their export to bundles (Snap-To-Object) and rehydration from them.
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Create, list, delete and mount snapshots; export, import (rehydrate), verify and rewrap snapshot bundles.",
        subcommands: [Create.self, List.self, Delete.self, Mount.self]
    )

    /// A filesystem and one of its snapshots, named on the command line.
    struct Target: ParsableArguments {
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Name of the filesystem.") var filesystem: String
        @Argument(help: "Name of the snapshot.") var snapshot: String

        func validate() throws {
            try Home.validateName(filesystem)
            do { try Home.validateName(snapshot) } catch {
                throw ValidationError("invalid snapshot name '\(snapshot)': use 1-64 letters, digits, '-', '_' or '.', not starting with '.' or '-'")
            }
        }

        func existingStore() throws -> StorePaths {
            let store = homeOptions.resolved.store(filesystem)
            guard FileManager.default.fileExists(atPath: store.superblock) else { throw MetaStoreError.storeNotFound(path: store.root) }
            return store
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a snapshot (also while mounted and written: writes pause for the metadata copy; no file data is copied).")
        @OptionGroup var target: Target

        func run() throws {
            try userErrors {
                let info = try SnapshotRequests.create(target.snapshot, store: try target.existingStore())
                writeStdout("created snapshot \(info.name) of \(target.filesystem) (id \(info.id))\n")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a filesystem's snapshots, oldest first, with the space each holds on its own.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Name of the filesystem.") var filesystem: String
        @Flag(help: "Print JSON for scripts.") var json = false

        func validate() throws { try Home.validateName(filesystem) }

        func run() throws {
            try userErrors {
                let store = homeOptions.resolved.store(filesystem)
                guard FileManager.default.fileExists(atPath: store.superblock) else { throw MetaStoreError.storeNotFound(path: store.root) }
                let manager = SnapshotManager(store: store)
                let mounts = MountTable.current()
                let rows: [[String: Any]] = try manager.list().map { s in
                    [
                        "name": s.name, "id": Int(s.id), "created": Self.iso(s.created), "createdUnix": Int(s.created),
                        "state": s.deleting ? "deleting" : "ok", "heldBytes": Int(StoreUsage.bytes(manager.paths.directory(s))),
                        "mounted": mounts.entries.filter { $0.fsType == "fuse.kmsfs" && $0.source == store.root + "@" + s.name }.map(\.mountpoint).joined(separator: ","),
                    ]
                }
                if json {
                    let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
                    writeStdout(String(decoding: data, as: UTF8.self) + "\n")
                    return
                }
                var table = [["NAME", "ID", "CREATED", "STATE", "HELD", "MOUNTED"]]
                for r in rows {
                    let mounted = r["mounted"] as? String ?? ""
                    table.append([r["name"] as? String ?? "", "\(r["id"] ?? "")", r["created"] as? String ?? "", r["state"] as? String ?? "",
                                  StoreUsage.human(UInt64(r["heldBytes"] as? Int ?? 0)), mounted.isEmpty ? "-" : mounted])
                }
                let widths = table[0].indices.map { i in table.map { $0[i].count }.max() ?? 0 }
                for line in table {
                    writeStdout(zip(line, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ") + "\n")
                }
            }
        }

        static func iso(_ seconds: UInt64) -> String {
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime]
            return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a snapshot (refused while it or the next older one is mounted); what older snapshots still need is kept.")
        @OptionGroup var target: Target

        func run() throws {
            try userErrors {
                try SnapshotRequests.delete(target.snapshot, store: try target.existingStore())
                writeStdout("deleted snapshot \(target.snapshot) of \(target.filesystem)\n")
            }
        }
    }

    struct Mount: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Mount a snapshot read-only (needs the key, like a mount); the live filesystem may stay mounted.")
        @OptionGroup var target: Target
        @Argument(help: "Directory to mount on.") var mountpoint: String
        @Flag(name: [.short, .long], help: "Stay in the foreground (logs to stderr).") var foreground = false
        @Flag(help: "Let other users access the mount.") var allowOther = false
        @Option(help: "Passphrase file, for a filesystem created with --passphrase-file.") var passphraseFile: String?

        func run() throws {
            _ = try target.existingStoreForMount()
            var arguments = ["--home", target.homeOptions.resolved.path, target.filesystem, Home.absolute(mountpoint), "--snapshot", target.snapshot]
            if foreground { arguments.append("--foreground") }
            if allowOther { arguments.append("--allow-other") }
            if let passphraseFile { arguments += ["--passphrase-file", Home.absolute(passphraseFile)] }
            try MountCommand.parse(arguments).run()
        }
    }
}

extension SnapshotCommand.Target {
    /// Like `existingStore`, with errors printed the CLI way.
    func existingStoreForMount() throws -> StorePaths {
        var result: StorePaths?
        try userErrors { result = try existingStore() }
        return result!
    }
}

import ArgumentParser
import Foundation
import KeyVault
import MetaStore
import SnapExport

/// `kmsfs snapshot ...`: point-in-time read-only views of a filesystem, and
/// their export to bundles (Snap-To-Object) and rehydration from them.
struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Create, list, delete and mount snapshots; export, import (rehydrate), verify and rewrap snapshot bundles.",
        subcommands: [Create.self, List.self, Delete.self, Mount.self, Export.self, Import.self, Verify.self, Rewrap.self]
    )

    /// A filesystem and one of its snapshots, named on the command line.
    struct Target: ParsableArguments {
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Name of the filesystem.") var filesystem: String
        @Argument(help: "Name of the snapshot.") var snapshot: String

        func validate() throws {
            try Home.validateName(filesystem)
            guard ComponentName.isValid(snapshot) else { throw ValidationError("invalid snapshot name '\(snapshot)': \(ComponentName.rule)") }
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
        @Option(help: "Passphrase file, for an unmounted filesystem created with --passphrase-file ($KMSFS_PASSPHRASE also works).")
        var passphraseFile: String?

        func run() throws {
            try userErrors {
                let store = try target.existingStore()
                let info = try SnapshotRequests.create(target.snapshot, store: store) {
                    try Unlock.open(store, home: target.homeOptions.resolved, passphrase: try SecretInput.passphrase(file: passphraseFile),
                                    purpose: "snapshot-create \(target.snapshot)").keys
                }
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
                        "mounted": mounts.viewMountpoints(ofStore: store.root, snapshot: s.name, lock: manager.paths.lock(s)).joined(separator: ","),
                    ]
                }
                if json {
                    try writeJSON(rows)
                    return
                }
                var table = [["NAME", "ID", "CREATED", "STATE", "HELD", "MOUNTED"]]
                for r in rows {
                    let mounted = r["mounted"] as? String ?? ""
                    table.append([r["name"] as? String ?? "", "\(r["id"] ?? "")", r["created"] as? String ?? "", r["state"] as? String ?? "",
                                  humanBytes(UInt64(r["heldBytes"] as? Int ?? 0)), mounted.isEmpty ? "-" : mounted])
                }
                writeTable(table)
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

        /// The same mount path as `kmsfs mount` (daemon, readiness, logs), serving the snapshot.
        func run() throws {
            try userErrors { _ = try target.existingStore() }
            var arguments = ["--home", target.homeOptions.resolved.path, target.filesystem, Home.mountPath(mountpoint), "--snapshot", target.snapshot]
            if foreground { arguments.append("--foreground") }
            if allowOther { arguments.append("--allow-other") }
            if let passphraseFile { arguments += ["--passphrase-file", Home.absolute(passphraseFile)] }
            try MountCommand.parse(arguments).run()
        }
    }
}

/// Options of the commands that read or write a bundle location.
struct BundleLocationOptions: ParsableArguments {
    @Option(help: "S3 endpoint for s3:// locations, e.g. http://127.0.0.1:9000 (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS).")
    var endpointUrl: String?
    @Option(help: "AWS profile for s3:// credentials (default: the standard chain: environment, then the default profile).")
    var profile: String?
    @Flag(help: "Allow an http:// --endpoint-url that is not a loopback address (requests carry signed credentials).")
    var insecureHttp = false
    @Flag(help: "Print a JSON summary on stdout (progress goes to a terminal's stderr only).") var json = false

    func open(_ location: String, create: Bool) throws -> any BundleStore {
        try openBundleStore(location, endpointURL: endpointUrl, profile: profile, insecureHTTP: insecureHttp, create: create)
    }

    /// Prints `fields` as JSON when --json, else `text`.
    func report(_ text: String, _ fields: [String: Any]) throws {
        if json {
            try writeJSON(fields)
        } else {
            writeStdout(text)
        }
    }
}

extension SnapshotCommand {
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Export a snapshot as a bundle (ciphertext chunks + manifest with the wrapped key) to a directory or s3://bucket/prefix. Needs no KMS.",
            discussion: """
                Chunks are named by their SHA-256, so exporting to a location that already holds earlier exports sends only
                the chunks that changed (--base names the earlier snapshot and checks its export is there), and an
                interrupted export resumes when run again. The manifest is written last.
                """)
        @OptionGroup var target: Target
        @Argument(help: "Destination: a directory, or s3://bucket/prefix.") var destination: String
        @Option(help: "An older snapshot already exported to the destination (incremental export).") var base: String?
        @Option(help: "Chunk size in bytes: a power of two from 64K to 256M (K, M suffixes allowed). Default 1M.") var chunkSize: String = "1M"
        @Option(help: "Chunks uploaded at once, 1-64 (default: 8 for s3, or $KMSFS_S3_PARALLEL; 4 for a directory; a tar file takes one at a time).")
        var parallel: Int?
        @OptionGroup var location: BundleLocationOptions

        func run() throws {
            try userErrors {
                let size = try Self.parseChunkSize(chunkSize)
                let store = try target.existingStore()
                let info = try SnapshotRequests.usable(target.snapshot, manager: SnapshotManager(store: store))
                if let base, base == target.snapshot { throw UserFacingError("--base must name an older snapshot, not the one exported", exitCode: ExitCodes.usage) }
                if let parallel, !(1...64).contains(parallel) { throw UserFacingError("--parallel must be between 1 and 64", exitCode: ExitCodes.usage) }
                let destinationStore = try location.open(destination, create: true)
                if let parallel { destinationStore.uploadWidth = parallel }
                let s = try Exporter(store: store, chunkSize: size).export(snapshot: info, to: destinationStore, base: base, progress: !location.json)
                try location.report(
                    "exported snapshot \(s.snapshot) of \(target.filesystem) to \(s.location): \(s.files) files, \(s.chunks) chunks (\(humanBytes(s.bytes))); "
                        + "sent \(s.uploadedChunks) new chunks (\(humanBytes(s.uploadedBytes))) in \(String(format: "%.1f", s.seconds)) s\n",
                    ["snapshot": s.snapshot, "filesystem": target.filesystem, "location": s.location, "files": s.files, "chunks": s.chunks, "bytes": Int(s.bytes),
                     "uploadedChunks": s.uploadedChunks, "uploadedBytes": Int(s.uploadedBytes), "metadataBytes": Int(s.metadataBytes),
                     "sentBytes": Int(destinationStore.bytesSent), "seconds": s.seconds, "base": base as Any,
                     "multipartUploads": (destinationStore as? S3BundleStore)?.multipartUploads ?? 0,
                     "reusedFiles": s.reusedFiles, "readBytes": Int(s.readBytes)])
            }
        }

        static func parseChunkSize(_ text: String) throws -> Int {
            let upper = text.uppercased()
            let multiplier = upper.hasSuffix("K") ? 1 << 10 : upper.hasSuffix("M") ? 1 << 20 : 1
            guard let value = Int(multiplier == 1 ? upper : String(upper.dropLast())), value > 0 else {
                throw UserFacingError("invalid --chunk-size '\(text)'", exitCode: ExitCodes.usage)
            }
            let size = value * multiplier
            guard size >= 64 << 10, size <= 256 << 20, size & (size - 1) == 0 else {
                throw UserFacingError("--chunk-size must be a power of two from 64K to 256M, not \(text)", exitCode: ExitCodes.usage)
            }
            return size
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rehydrate a snapshot bundle into a new filesystem (unwraps the key through this home's KMS; verifies every chunk first).")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Source: a directory, or s3://bucket/prefix.") var source: String
        @Argument(help: "Name of the new filesystem.") var name: String
        @Option(help: "Which exported snapshot, when the source holds several.") var snapshot: String?
        @Option(help: "Passphrase file, for a filesystem created with --passphrase-file.") var passphraseFile: String?
        @OptionGroup var location: BundleLocationOptions

        func validate() throws { try Home.validateName(name) }

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                try home.ensure()
                let target = home.store(name)
                let passphrase = try SecretInput.passphrase(file: passphraseFile)
                let reader = BundleReader(source: try location.open(source, create: false))
                let staging = home.path + "/.importing-" + name
                Interruption.catchSignals()
                var unlockedBy: [String] = []
                let s = try reader.rehydrate(snapshot: snapshot, target: target, staging: staging, progress: !location.json) { superblock in
                    do {
                        let unlocked = try Unlock.unlock(superblock, home: home, passphrase: passphrase, filesystem: name, purpose: "import")
                        unlockedBy = unlocked.answered
                        return unlocked.keys
                    } catch {
                        // A bundle made with a home's local key file opens only in that home.
                        let envelope = try? WrappedKey(decoding: superblock.wrappedKey)
                        guard envelope?.provider == .local, envelope?.keyIdentifier != "passphrase" else { throw error }
                        let user = UserFacingError.from(error)
                        throw UserFacingError("the bundle's key is wrapped by the local key file of the home it came from, not this one (\(user.message))",
                                              hint: "in the source home: 'kmsfs security kms set ...', then 'kmsfs snapshot rewrap \(source)'",
                                              exitCode: user.exitCode)
                    }
                }
                // A new filesystem: an anchor left by an earlier one of this name and UUID (deleted by hand) does not apply.
                if let superblock = try? SuperblockFile.read(target.superblock) { RollbackAnchor(home: home, superblock: superblock, name: name).remove() }
                AuditLog.record(home, "import", ["filesystem": name, "snapshot": s.snapshot, "uuid": s.filesystemUUID, "source": source])
                try location.report(
                    "imported snapshot \(s.snapshot) as filesystem \(name) (uuid \(s.filesystemUUID)): \(s.files) files, \(s.chunks) chunks (\(humanBytes(s.bytes))) verified; unlocked by \(unlockedBy.joined(separator: ", "))\n",
                    ["filesystem": name, "snapshot": s.snapshot, "uuid": s.filesystemUUID, "files": s.files, "chunks": s.chunks, "bytes": Int(s.bytes),
                     "metadataBytes": Int(s.metadataBytes), "repaired": s.repaired, "seconds": s.seconds, "passkeys": unlockedBy])
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a snapshot bundle: the manifest's own hash, then every chunk's length and SHA-256 (no KMS); with --deep also every row and unit MAC.",
            discussion: """
                --deep unwraps the bundle's key through this home's KMS, as an import would, and checks what only the key can: that every
                metadata row and name authenticates and that every file's data gives the content digest its sealed row holds (filesystems
                with integrity). Nothing but the metadata image is written, to a scratch directory in the home, removed after.
                """)
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Source: a directory, or s3://bucket/prefix.") var source: String
        @Option(help: "Which exported snapshot, when the source holds several.") var snapshot: String?
        @Flag(help: "Also check every metadata row and data unit MAC (needs the KMS).") var deep = false
        @Option(help: "Passphrase file, for a bundle of a filesystem created with --passphrase-file (with --deep).") var passphraseFile: String?
        @OptionGroup var location: BundleLocationOptions

        func validate() throws {
            if passphraseFile != nil && !deep { throw ValidationError("--passphrase-file needs --deep") }
        }

        func run() throws {
            try userErrors {
                let reader = BundleReader(source: try location.open(source, create: false))
                guard deep else {
                    let s = try reader.verify(snapshot: snapshot, progress: !location.json)
                    try location.report(
                        "bundle of snapshot \(s.snapshot) (filesystem \(s.filesystemUUID)) is intact: \(s.files) files, \(s.chunks) chunks (\(humanBytes(s.bytes))) checked\n",
                        ["snapshot": s.snapshot, "uuid": s.filesystemUUID, "files": s.files, "chunks": s.chunks, "bytes": Int(s.bytes),
                         "metadataBytes": Int(s.metadataBytes), "ok": true, "deep": false, "seconds": s.seconds])
                    return
                }
                let home = homeOptions.resolved
                try home.ensure()
                let passphrase = try SecretInput.passphrase(file: passphraseFile)
                Interruption.catchSignals()
                var integrity = false
                let s = try reader.verifyDeep(snapshot: snapshot, scratch: home.path + "/.verifying-\(getpid())", progress: !location.json) { superblock in
                    integrity = superblock.hasIntegrity
                    return try Unlock.unlock(superblock, home: home, passphrase: passphrase, filesystem: source, purpose: "verify").keys
                }
                let data = integrity
                    ? "the data of all \(s.verifiedFiles) files matches its sealed content digests"
                    : "the filesystem has no integrity: its data units carry no MACs to check"
                try location.report(
                    "bundle of snapshot \(s.snapshot) (filesystem \(s.filesystemUUID)) is intact and authentic: \(s.files) files, \(s.chunks) chunks "
                        + "(\(humanBytes(s.bytes))), every metadata row authenticates; \(data)\n",
                    ["snapshot": s.snapshot, "uuid": s.filesystemUUID, "files": s.files, "chunks": s.chunks, "bytes": Int(s.bytes),
                     "metadataBytes": Int(s.metadataBytes), "ok": true, "deep": true, "integrity": integrity, "verifiedFiles": s.verifiedFiles,
                     "seconds": s.seconds])
            }
        }
    }

    struct Rewrap: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rewrap the key stored in a bundle's manifests with this home's KMS (after a key rotation, or to move a bundle to another KMS).",
            discussion: "The chunks are not touched: they are encrypted with the filesystem key, which stays the same; only its wrapping changes.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Bundle location: a directory, or s3://bucket/prefix.") var source: String
        @Option(help: "The new key's UID (kmip: wrap with this key instead of the configured one).") var newKeyUid: String?
        @Option(help: "Passphrase file, for a bundle of a filesystem created with --passphrase-file.") var passphraseFile: String?
        @OptionGroup var location: BundleLocationOptions

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                var registry = try PasskeyRegistry.load(home)
                if registry.passkeys.contains(where: { $0.type == .local }) { try home.ensureLocalKey() }
                if let newKeyUid {
                    guard var role = registry.kmsRole, role.type == .kmip else {
                        throw UserFacingError("--new-key-uid is only for a kmip KMS", exitCode: ExitCodes.usage)
                    }
                    role.kms?.keyIdentifier = newKeyUid
                    registry.replace(role.name, with: role)
                }
                let passphrase = try SecretInput.passphrase(file: passphraseFile)
                let reader = BundleReader(source: try location.open(source, create: false))
                let changes = try reader.rewrap { old in
                    let unlocked = try Unlock.unlock(old, home: home, passphrase: passphrase, filesystem: source, purpose: "bundle-rewrap")
                    var updated = old
                    // Every new slot is proven against the key-check value before it replaces the old ones.
                    (updated.keyslots, updated.threshold) = try KeyslotWriter.slots(master: unlocked.master, uuid: old.uuid, registry: registry, home: home) {
                        _ = try Unlock.keys(from: $0, superblock: old)
                    }
                    // Passphrase wraps (the filesystem's own, or recovery passkeys of the home it came from) are not this home's to renew: kept.
                    updated.keyslots += old.keyslots.filter { slot in
                        KeyslotWriter.isPassphraseSlot(slot) && !updated.keyslots.contains { $0.passkey == slot.passkey }
                    }
                    return updated
                }
                var text = ""
                for c in changes {
                    text += "rewrapped bundle of snapshot \(c.snapshot): \(c.from) -> \(c.to)\n"
                    AuditLog.record(home, "bundle-rewrap", ["location": source, "snapshot": c.snapshot, "from": c.from, "to": c.to])
                }
                try location.report(text + "rewrapped \(changes.count) manifest(s) at \(source)\n",
                                    ["location": source, "rewrapped": changes.map { ["snapshot": $0.snapshot, "from": $0.from, "to": $0.to] }])
            }
        }
    }
}

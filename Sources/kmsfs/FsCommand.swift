import ArgumentParser
import BlockCipher
import Foundation
import KeyVault
import MetaStore
import SnapExport
#if canImport(Glibc)
import Glibc
#endif

/// `kmsfs fs create|list|delete`.
struct FsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fs",
        abstract: "Create, list and delete encrypted filesystems.",
        subcommands: [Create.self, List.self, Delete.self, Upgrade.self]
    )

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an encrypted filesystem; its key is wrapped by the configured KMS (the local key by default).")

        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Name of the new filesystem.") var name: String
        @Option(help: "Protect the key with a passphrase read from this file instead of the local key file ($KMSFS_PASSPHRASE also works).")
        var passphraseFile: String?
        @Flag(help: "Make an XTS-only filesystem: no unit tags, no sealed metadata, no rollback detection (integrity is on by default).")
        var noIntegrity = false

        func run() throws {
            try userErrors {
                try Home.validateName(name)
                let home = homeOptions.resolved
                try home.ensure()
                let store = home.store(name)
                guard !FileManager.default.fileExists(atPath: store.root) else { throw MetaStoreError.storeExists(path: store.root) }
                let lock = try HomeLock(home)
                defer { withExtendedLifetime(lock) {} }
                let passphrase = try SecretInput.passphrase(file: passphraseFile)
                let registry = try PasskeyRegistry.load(home)
                if passphrase == nil, registry.passkeys.contains(where: { $0.type == .local }) { try home.ensureLocalKey() }
                let superblock = try FilesystemCreator.create(store: store, integrity: !noIntegrity) { master, uuid in
                    // Each wrap must give back exactly the new secret.
                    let prove = { (m: KeyMaterial) in
                        guard m.constantTimeEquals(master) else {
                            throw UserFacingError("a KMS gave back a different key than it wrapped", exitCode: ExitCodes.wrongKey)
                        }
                    }
                    if let passphrase {
                        // Its own passphrase instead of the home's passkeys (one unnamed slot, as before passkeys).
                        let manager = LocalKeyManager(source: .passphrase(passphrase))
                        let wrapped = try manager.wrap(master, context: WrapContext(filesystemUUID: uuid))
                        return ([Keyslot(passkey: "", kms: StoredKMSReference(type: "local", address: "", keyIdentifier: wrapped.keyIdentifier, keyVersion: ""),
                                         wrappedKey: wrapped.encoded())], 0)
                    }
                    return try KeyslotWriter.slots(master: master, uuid: uuid, registry: registry, home: home, prove: prove)
                }
                AuditLog.record(home, "create", ["filesystem": name, "uuid": superblock.uuidString, "kms": superblock.kms.type,
                                                 "key": superblock.kms.keyIdentifier, "keyVersion": superblock.kms.keyVersion])
                let slots = superblock.keyslots.map { $0.passkey.isEmpty ? "\($0.kms.type) \($0.kms.keyIdentifier)" : $0.passkey }.joined(separator: ", ")
                writeStdout("created filesystem \(name) (uuid \(superblock.uuidString), key wrapped by \(superblock.kms.type) \(superblock.kms.keyIdentifier)"
                            + (superblock.keyslots.count > 1 ? "; keyslots \(slots)" + (superblock.threshold > 0 ? ", \(superblock.threshold) shares needed" : "") : "")
                            + ", integrity \(superblock.integrityMode))\n")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List filesystems: name, uuid, KMS, key, keyslots (passkeys), integrity mode, size on disk, mount point.")

        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print JSON for scripts.") var json = false

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                let mounts = MountTable.current()
                var rows = [[String: String]]()
                for name in home.filesystemNames() {
                    let store = home.store(name)
                    var row = ["name": name, "mounted": mounts.mountpoints(ofStore: store.root).joined(separator: ","),
                               "size": String(StoreUsage.bytes(store.root))]
                    do {
                        let sb = try SuperblockFile.read(store.superblock)
                        row["uuid"] = sb.uuidString
                        row["kms"] = sb.kms.type
                        row["key"] = sb.kms.keyIdentifier + (sb.kms.keyVersion.isEmpty ? "" : " v\(sb.kms.keyVersion)")
                        row["integrity"] = sb.integrityMode
                        row["keyslots"] = sb.keyslots.map { $0.passkey.isEmpty ? "\($0.kms.type)-\($0.kms.keyIdentifier)" : $0.passkey }.joined(separator: ",")
                            + (sb.threshold > 0 ? " (\(sb.threshold) shares needed)" : "")
                    } catch {
                        row["uuid"] = "?"
                        row["kms"] = "?"
                        row["key"] = "superblock unreadable: \(error)"
                    }
                    rows.append(row)
                }
                if json {
                    try writeJSON(rows)
                    return
                }
                let columns = ["name", "uuid", "kms", "key", "keyslots", "integrity", "size", "mounted"]
                writeTable([columns.map { $0.uppercased() }]
                           + rows.map { r in columns.map { c in c == "size" ? humanBytes(UInt64(r[c] ?? "0") ?? 0) : (r[c].flatMap { $0.isEmpty ? nil : $0 } ?? "-") } })
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a filesystem and all its data (refused while mounted).")

        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Name of the filesystem.") var name: String
        @Flag(help: "Confirm the deletion (required).") var yes = false

        func run() throws {
            try userErrors {
                try Home.validateName(name)
                let store = homeOptions.resolved.store(name)
                guard FileManager.default.fileExists(atPath: store.superblock) else { throw MetaStoreError.storeNotFound(path: store.root) }
                let table = MountTable.current()
                let snapshots = SnapshotManager(store: store)
                let mounted = table.mountpoints(ofStore: store.root)
                    + ((try? snapshots.list()) ?? []).flatMap { table.viewMountpoints(ofStore: store.root, snapshot: $0.name, lock: snapshots.paths.lock($0)) }
                guard !StoreLock.isHeld(store.root + "/lock") || !mounted.isEmpty else {
                    throw UserFacingError("filesystem \(name) is in use by a kmsfs process (a mount daemon, fsck or a snapshot command)", exitCode: ExitCodes.usage)
                }
                guard mounted.isEmpty else {
                    throw UserFacingError("filesystem \(name) (or a snapshot of it) is mounted at \(mounted.joined(separator: ", "))", hint: "kmsfs umount \(mounted[0])", exitCode: ExitCodes.usage)
                }
                guard yes else { throw UserFacingError("deleting \(name) destroys its data; add --yes to confirm", exitCode: ExitCodes.usage) }
                let superblock = try? SuperblockFile.read(store.superblock)
                try FileManager.default.removeItem(atPath: store.root)
                if let superblock { RollbackAnchor(home: homeOptions.resolved, superblock: superblock, name: name).remove() }
                let uuid = superblock?.uuidString ?? "?"
                AuditLog.record(homeOptions.resolved, "delete", ["filesystem": name, "uuid": uuid])
                writeStdout("deleted filesystem \(name)\n")
            }
        }
    }
}

/// Disk usage of a store directory.
enum StoreUsage {
    static func bytes(_ root: String) -> UInt64 {
        var total: UInt64 = 0
        guard let walker = FileManager.default.enumerator(atPath: root) else { return 0 }
        while let rel = walker.nextObject() as? String {
            var st = stat()
            if lstat(root + "/" + rel, &st) == 0 { total += UInt64(st.st_blocks) * 512 }
        }
        return total
    }
}

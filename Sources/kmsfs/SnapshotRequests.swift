import BlockCipher
import Foundation
import FuseFrontend
import MetaStore
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Snapshot create and delete, wherever the filesystem is: done by its mount
/// daemon (which pauses its writers) when mounted, else directly under the
/// store lock. Nothing is decrypted; with integrity a new snapshot's image is
/// sealed to its catalog entry (`SnapshotSeal`), so an unmounted filesystem's
/// key is unwrapped for it.
enum SnapshotRequests {
    static let createVerb = "snapshot-create"
    static let deleteVerb = "snapshot-delete"
    /// `kmsfs umount`'s request before it unmounts (see `UmountCommand.sealBeforeUnmount`).
    static let sealVerb = "seal"

    /// Called by the mount daemon: answers requests on the control channel
    /// (snapshot create and delete, `scrub`, and `status`, answered by `status`).
    /// `anchor` moves the rollback anchor after a snapshot (which advances the generation).
    static func serve(store: StorePaths, superblock: Superblock, keys: FilesystemKeys, fileSystem: FileSystem, metadata: MetadataStore,
                      preserver: SnapshotPreserver, anchor: AnchorKeeper?, status: @escaping @Sendable () -> String) throws {
        let manager = SnapshotManager(store: store)
        try ControlChannel.serve(storeRoot: store.root) { verb, argument in
            do {
                // Writers paused; open files pick up the new newest snapshot after the reload.
                func paused(_ change: () throws -> Void) throws {
                    try fileSystem.paused {
                        defer { try? preserver.reload() }
                        try change()
                    }
                }
                switch verb {
                case createVerb:
                    var id: UInt32 = 0
                    try paused {
                        try fileSystem.sealForSnapshot()
                        id = try manager.create(name: argument, now: UInt64(time(nil)), keys: keys.integrity) { try metadata.writeImage(to: $0) }.id
                    }
                    try anchor?.advance(force: true)
                    return .success("\(id)")
                case deleteVerb:
                    try paused {
                        try fileSystem.flushHeldBackWrites()  // into the deltas they were copied for, before those move
                        try manager.delete(name: argument)
                    }
                    return .success("")
                case sealVerb:
                    fileSystem.paused { fileSystem.flushForUnmount() }
                    return .success("")
                case MountStatus.verb:
                    return .success(status())
                case ScrubCommand.verb:
                    return .success(try ScrubCommand.serve(fileSystem, superblock: superblock))
                default:
                    return .failure(UserFacingError("unknown control request '\(verb)'", exitCode: ExitCodes.usage))
                }
            } catch {
                return .failure(UserFacingError.from(error))
            }
        }
    }

    /// Takes a snapshot of filesystem `name`'s store; `unlock` gives its
    /// keys when it is not mounted and has integrity.
    static func create(_ snapshot: String, store: StorePaths, unlock: () throws -> FilesystemKeys) throws -> SnapshotInfo {
        let manager = SnapshotManager(store: store)
        try onStore(store, createVerb, snapshot) {
            // Without the key, the content digests the image must hold can only come from a clean unmount.
            let waiting = try MetadataStore.filesAwaitingDigests(inStore: store.metadata)
            guard waiting == 0 else {
                throw UserFacingError("the filesystem was not unmounted cleanly: \(waiting) file(s) have no sealed content digest for the snapshot to hold",
                                      hint: "mount and unmount it once (or take the snapshot while it is mounted)", exitCode: ExitCodes.usage)
            }
            let now = UInt64(time(nil))
            guard try SuperblockFile.read(store.superblock).hasIntegrity else {
                _ = try manager.create(name: snapshot, now: now, keys: nil) { try MetadataStore.writeImage(of: store.metadata, to: $0) }
                return
            }
            // With integrity the store is opened as a mount would (every row verified) and the image sealed.
            let keys = try unlock()
            let metadata = try MetadataStore(path: store.metadata, names: keys.names, integrity: keys.integrity, create: false, exclusive: true)
            _ = try manager.create(name: snapshot, now: now, keys: keys.integrity) { try metadata.writeImage(to: $0) }
        }
        return try named(snapshot, manager: manager)
    }

    static func delete(_ snapshot: String, store: StorePaths) throws {
        try onStore(store, deleteVerb, snapshot) { try SnapshotManager(store: store).delete(name: snapshot) }
    }

    /// Runs a change directly under the store lock when the filesystem is not
    /// mounted (`locally`), else asks its mount daemon (`verb argument`), after
    /// pushing the kernel's dirty pages to the daemon so the change sees what
    /// applications have written so far.
    private static func onStore(_ store: StorePaths, _ verb: String, _ argument: String, locally: () throws -> Void) throws {
        // A short wait, not 0: `FileLock.isHeld` (fs list, umount) probes by taking the lock for an instant.
        if let lock = StoreLock(path: store.root + "/lock", timeout: 0.3) {
            defer { withExtendedLifetime(lock) {} }
            try StoreUpgrade.finishInterrupted(store)  // never snapshot the old metadata of a committed upgrade
            try locally()
            return
        }
        for mountpoint in MountTable.current().mountpoints(ofStore: store.root) {
            let fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 {
                _ = syncfs(fd)
                close(fd)
            }
        }
        _ = try ControlChannel.request(storeRoot: store.root, verb, argument)
    }

    static func named(_ name: String, manager: SnapshotManager) throws -> SnapshotInfo {
        guard let info = try SnapshotCatalog.load(manager.paths).named(name) else { throw SnapshotError.notFound(name) }
        return info
    }

    /// A snapshot that can be mounted or exported.
    static func usable(_ name: String, manager: SnapshotManager) throws -> SnapshotInfo {
        let info = try named(name, manager: manager)
        guard !info.deleting else { throw SnapshotError.deleting(name) }
        return info
    }
}

import Foundation
import FuseFrontend
import MetaStore
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Snapshot create and delete, wherever the filesystem is: done by its mount
/// daemon (which pauses its writers) when mounted, else directly under the
/// store lock. Either way no KMS is needed: nothing is decrypted.
enum SnapshotRequests {
    static let createVerb = "snapshot-create"
    static let deleteVerb = "snapshot-delete"

    /// Called by the mount daemon: answers requests on the control channel.
    static func serve(store: StorePaths, fileSystem: FileSystem, metadata: MetadataStore, preserver: SnapshotPreserver) throws {
        let manager = SnapshotManager(store: store)
        try ControlChannel.serve(storeRoot: store.root) { verb, argument in
            do {
                switch verb {
                case createVerb:
                    let info = try fileSystem.paused {
                        defer { try? preserver.reload() }
                        return try manager.create(name: argument, now: UInt64(time(nil))) { try metadata.writeImage(to: $0) }
                    }
                    return .success("\(info.id)")
                case deleteVerb:
                    try fileSystem.paused {
                        defer { try? preserver.reload() }
                        try manager.delete(name: argument)
                    }
                    return .success("")
                default:
                    return .failure(UserFacingError("unknown control request '\(verb)'", exitCode: ExitCodes.usage))
                }
            } catch {
                return .failure(UserFacingError.from(error))
            }
        }
    }

    /// Takes a snapshot of filesystem `name`'s store.
    static func create(_ snapshot: String, store: StorePaths) throws -> SnapshotInfo {
        let manager = SnapshotManager(store: store)
        if let lock = StoreLock(path: store.root + "/lock", timeout: 0) {
            defer { withExtendedLifetime(lock) {} }
            return try manager.create(name: snapshot, now: UInt64(time(nil))) { try MetadataStore.writeImage(of: store.metadata, to: $0) }
        }
        // Mounted: push the kernel's dirty pages to the daemon first, so the
        // snapshot holds what applications have written so far.
        for mountpoint in MountTable.current().mountpoints(ofStore: store.root) {
            let fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 {
                _ = syncfs(fd)
                close(fd)
            }
        }
        _ = try ControlChannel.request(storeRoot: store.root, createVerb, snapshot)
        guard let info = try manager.list().first(where: { $0.name == snapshot }) else { throw SnapshotError.notFound(snapshot) }
        return info
    }

    static func delete(_ snapshot: String, store: StorePaths) throws {
        if let lock = StoreLock(path: store.root + "/lock", timeout: 0) {
            defer { withExtendedLifetime(lock) {} }
            try SnapshotManager(store: store).delete(name: snapshot)
            return
        }
        _ = try ControlChannel.request(storeRoot: store.root, deleteVerb, snapshot)
    }

    /// A snapshot that can be mounted or exported.
    static func usable(_ name: String, manager: SnapshotManager) throws -> SnapshotInfo {
        guard let info = try manager.list().first(where: { $0.name == name }) else { throw SnapshotError.notFound(name) }
        guard !info.deleting else { throw SnapshotError.deleting(name) }
        return info
    }

    /// The lock a mount's daemon holds: the store's, or for a snapshot view
    /// (source `<store>@<snapshot>`) the snapshot's.
    static func lockPath(ofMountSource source: String) -> String {
        guard let at = source.lastIndex(of: "@") else { return source + "/lock" }
        let store = StorePaths(root: String(source[..<at]))
        let manager = SnapshotManager(store: store)
        guard let info = try? manager.list().first(where: { $0.name == String(source[source.index(after: at)...]) }) else { return source + "/lock" }
        return manager.paths.lock(info)
    }
}

import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// `kmsfs fs upgrade`: turns an XTS-only store (release 1.0, --no-integrity)
/// into one with integrity, in place and crash-safely (docs/FORMAT.md
/// "Upgrading a store"). Everything new is written beside the old files
/// first; the superblock write is the commit point; then the new metadata
/// replaces the old. A crash before the commit leaves the old store (and
/// leftovers `finishInterrupted` removes), after it the new one (which
/// `finishInterrupted` completes).
public enum StoreUpgrade {
    static let suffix = ".upgrading"

    /// Upgrades the store under the caller's store lock. `keys` are the
    /// filesystem's keys derived with integrity (the caller checked the old
    /// key-check value); `progress` gets the data bytes tagged so far.
    public static func run(store: StorePaths, superblock: Superblock, keys: FilesystemKeys, progress: (UInt64) -> Void = { _ in }) throws -> Superblock {
        guard let integrity = keys.integrity else { throw MetaStoreError.posix(EINVAL) }
        guard !superblock.hasIntegrity else { throw MetaStoreError.untrustedMetadata(path: store.superblock, problem: "already has integrity") }
        try finishInterrupted(store)
        // 1. The unit tags of every data file (an XTS-only mount ignores tag files).
        let data = DataStore(directory: store.data, cipher: keys.data, unitMAC: integrity.units)
        var digests: [UInt64: [UInt8]] = [:]
        var tagged: UInt64 = 0
        for id in try data.fileIDs().sorted() {
            digests[id] = try data.tagAsItStands(FileID(id))
            tagged += fileSize(atPath: data.path(for: FileID(id)))
            progress(tagged)
            FaultInjection.crashPoint("upgrade-tags")
        }
        try data.syncAll()
        // 2. The metadata, and each snapshot's image, as schema 2 beside the old,
        //    each regular file with its content digest: the live one from its tags,
        //    a snapshot's from the units the snapshot holds (read through its view).
        try MetadataStore.writeUpgradedCopy(of: store.metadata, to: store.metadata + suffix, names: keys.names, integrity: integrity, wal: true) { a in
            digests[a.ino.fileID.rawValue] ?? ContentDigester(fileID: a.ino.fileID, mac: integrity.units).finalize()
        }
        let paths = SnapshotPaths(storeRoot: store.root)
        for snapshot in try SnapshotCatalog.load(paths).snapshots where access(paths.metadata(snapshot), F_OK) == 0 {
            let view = DataStore(directory: store.data, cipher: keys.data, unitMAC: integrity.units, overlay: SnapshotOverlay(storeRoot: store.root, snapshot: snapshot))
            let image = paths.metadata(snapshot)
            let copy = try MetadataStore.writeUpgradedCopy(of: image, to: image + suffix, names: keys.names, integrity: integrity, wal: false) { a in
                try view.snapshotContentDigest(a.ino.fileID, size: a.size)
            }
            try SnapshotSeal.write(image: image + suffix, for: snapshot, counters: copy.countersTag ?? [], keys: integrity)
        }
        FaultInjection.crashPoint("upgrade-metadata")
        // 3. The commit point: the superblock with the integrity bit and the new key-check value.
        var next = superblock
        next.incompatFeatures |= SuperblockLayout.incompatBoundKeyCheck | SuperblockLayout.incompatIntegrity
        next.formatMinor = 1
        next.keyCheckValue = keys.keyCheckValue
        let written = try SuperblockFile.replace(next, at: store.superblock)
        FaultInjection.crashPoint("upgrade-superblock")
        // 4. The new metadata takes the old one's place.
        try finishInterrupted(store)
        return written
    }

    /// Completes an upgrade that committed (the superblock has integrity) or
    /// removes what one that did not commit left behind. Call under the store
    /// lock before opening the store's metadata.
    public static func finishInterrupted(_ store: StorePaths) throws {
        let pending = ([store.metadata] + (try snapshotImages(store))).filter { access($0 + suffix, F_OK) == 0 }
        guard !pending.isEmpty else { return }
        let committed = try SuperblockFile.read(store.superblock).hasIntegrity
        for path in pending {
            guard committed else {
                removeDatabase(path + suffix)
                continue
            }
            // The old WAL must go first: replayed onto the new database it would corrupt it.
            try removeJournals(of: path)
            guard rename(path + suffix, path) == 0 else { throw MetaStoreError.io(operation: "rename", path: path, errno: errno) }
            try syncDirectory(containing: path)
            FaultInjection.crashPoint("upgrade-rename")
        }
    }

    /// The metadata images of the store's snapshots (an unreadable catalog is an error, not "none").
    static func snapshotImages(_ store: StorePaths) throws -> [String] {
        let paths = SnapshotPaths(storeRoot: store.root)
        return try SnapshotCatalog.load(paths).snapshots.map { paths.metadata($0) }.filter { access($0, F_OK) == 0 }
    }

    /// Removes an SQLite database's WAL, shared-memory and rollback journal files.
    static func removeJournals(of path: String) throws {
        for stale in [path + "-wal", path + "-shm", path + "-journal"] {
            guard unlink(stale) == 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "unlink", path: stale, errno: errno) }
        }
    }

    /// Removes an SQLite database and its journals (a copy being rebuilt or dropped).
    static func removeDatabase(_ path: String) {
        unlink(path)
        try? removeJournals(of: path)
    }


}

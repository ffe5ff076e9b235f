import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// A snapshot's metadata image as its writer made it.
public struct SnapshotImage: Sendable {
    /// The next inode number of the copied store: every file id below it may appear in the copy.
    public var fileIDLimit: UInt64
    /// With integrity: the counters' tag the copy holds, as the writer computed it.
    public var countersTag: [UInt8]?

    public init(fileIDLimit: UInt64, countersTag: [UInt8]? = nil) {
        self.fileIDLimit = fileIDLimit
        self.countersTag = countersTag
    }
}

/// Creating and deleting snapshots of one store. The caller makes sure no
/// data write runs meanwhile: the mount daemon pauses its writers, the CLI
/// holds the store lock of an unmounted filesystem.
public struct SnapshotManager: Sendable {
    public let store: StorePaths
    public let paths: SnapshotPaths

    public init(store: StorePaths) {
        self.store = store
        paths = SnapshotPaths(storeRoot: store.root)
    }

    public func list() throws -> [SnapshotInfo] { try SnapshotCatalog.load(paths).snapshots }

    /// Takes a snapshot: a copy of the metadata (O(metadata)) and an empty
    /// delta directory; file data is shared until it changes.
    /// - Parameter image: writes the metadata copy to the given path.
    /// - Parameter keys: integrity on: the image is sealed to its catalog entry (`SnapshotSeal`).
    public func create(name: String, now: UInt64, keys: IntegrityKeys?, image: (String) throws -> SnapshotImage) throws -> SnapshotInfo {
        var catalog = try SnapshotCatalog.load(paths)
        guard catalog.named(name) == nil else { throw SnapshotError.exists(name) }
        var info = SnapshotInfo(id: catalog.nextID, name: name, created: now, fileIDLimit: 0)
        try makeDirectory(paths.root)
        try removeTree(paths.directory(info))  // a leftover of a create that crashed before the catalog named it
        try makeDirectory(paths.directory(info))
        try makeDirectory(paths.deltaDirectory(info))
        let written = try image(paths.metadata(info))
        info.fileIDLimit = written.fileIDLimit
        if let keys {
            guard let counters = written.countersTag else { throw MetaStoreError.posix(EINVAL) }  // (an image of a store without integrity)
            try SnapshotSeal.write(image: paths.metadata(info), for: info, counters: counters, keys: keys)
        }
        try syncDirectory(containing: paths.deltaDirectory(info))
        try syncDirectory(containing: paths.directory(info))
        catalog.nextID += 1
        catalog.snapshots.append(info)
        try catalog.save(paths)
        return info
    }

    /// Deletes a snapshot. What the next older snapshot still needs from its
    /// delta (the units that changed after it) is merged into that one first.
    /// Refused while either snapshot is in use (a view or an export holds its lock).
    public func delete(name: String) throws {
        var catalog = try SnapshotCatalog.load(paths)
        guard let index = catalog.snapshots.firstIndex(where: { $0.name == name }) else { throw SnapshotError.notFound(name) }
        let target = catalog.snapshots[index]
        let older = index > 0 ? catalog.snapshots[index - 1] : nil
        var held: [FileLock] = []
        for s in [target] + (older.map { [$0] } ?? []) where access(paths.directory(s), F_OK) == 0 {
            // (A delete that crashed after removing the directory has nothing left to lock.)
            guard let lock = try FileLock(path: paths.lock(s), exclusive: true) else { throw SnapshotError.mounted(s.name) }
            held.append(lock)
        }
        defer { withExtendedLifetime(held) {} }
        if !target.deleting {
            catalog.snapshots[index].deleting = true
            try catalog.save(paths)
        }
        if let older { try merge(target, into: older) }
        try removeTree(paths.directory(target))
        catalog.snapshots.remove(at: index)
        try catalog.save(paths)
    }

    /// Makes `older`'s view independent of `target`'s delta. Idempotent, so a
    /// delete that crashed is finished by running it again.
    func merge(_ target: SnapshotInfo, into older: SnapshotInfo) throws {
        let ids = try deltaFileIDs(target)
        for id in ids.sorted() {
            let (sourceDelta, sourceWhole) = (paths.delta(target, id), paths.whole(target, id))
            let (destinationDelta, destinationWhole) = (paths.delta(older, id), paths.whole(older, id))
            // The older snapshot already holds the whole file: it needs nothing newer.
            if access(destinationWhole, F_OK) == 0 { continue }
            guard let destination = try DeltaWriter.openExisting(path: destinationDelta, fileID: id) else {
                // Unchanged between the two snapshots: the newer one's record is exact for the older one.
                try moveIfPresent(sourceDelta, destinationDelta)
                try moveIfPresent(sourceWhole, destinationWhole)
                continue
            }
            if let source = try DeltaWriter.openExisting(path: sourceDelta, fileID: id) {
                let unit = DeltaFormat.unit
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: unit, alignment: unit)
                defer { buffer.deallocate() }
                for u in try source.storedUnits() where u < destination.baseUnits && !destination.isPreserved(u) {
                    try readFully(source.fd, into: buffer, at: DeltaFormat.offset(of: u), path: sourceDelta)
                    if DeltaFormat.isMarker(UnsafeRawBufferPointer(buffer)) { buffer.initializeMemory(as: UInt8.self, repeating: 0) }
                    try destination.put(first: u, ciphertext: buffer)
                }
                // Units past the newer base were holes at the newer snapshot, hence at the older one too when unchanged.
                if source.baseUnits < destination.baseUnits {
                    buffer.initializeMemory(as: UInt8.self, repeating: 0)
                    for u in source.baseUnits..<destination.baseUnits where !destination.isPreserved(u) {
                        try destination.put(first: u, ciphertext: buffer)
                        buffer.initializeMemory(as: UInt8.self, repeating: 0)
                    }
                }
                try destination.sync()
            }
            try moveIfPresent(sourceWhole, destinationWhole)
        }
        try syncDirectory(containing: paths.delta(older, 0))
    }

    /// fsck of the snapshots: the catalog parses; each snapshot has its
    /// metadata copy, which passes SQLite's integrity check; every delta file
    /// has a valid header for its file id. Directories no catalog entry names
    /// (left by a create that crashed) are strays; `repair` removes them.
    /// With `keys` (integrity on), each present image's seal must match its
    /// catalog entry (`SnapshotSeal`): a mismatch is tampering, never repaired.
    public func check(repair: Bool, keys: IntegrityKeys? = nil, into report: inout ConsistencyReport) {
        let catalog: SnapshotCatalog
        do { catalog = try SnapshotCatalog.load(paths) } catch {
            report.problems.append("snapshot catalog: \(error)")
            report.unrepairable.append("the snapshot catalog \(paths.catalog) is unreadable")
            return
        }
        for s in catalog.snapshots {
            if s.deleting {
                report.problems.append("snapshot \(s.name): a delete did not finish")
                report.unrepairable.append("run 'kmsfs snapshot delete' for \(s.name) again")
            }
            do {
                let db = try MetadataSchema.open(paths.metadata(s), readOnly: true)
                var result: [String] = []
                try db.query("PRAGMA integrity_check") { result.append($0.text(0)) }
                if result != ["ok"] { throw MetaStoreError.database(operation: "integrity_check", message: result.prefix(3).joined(separator: "; ")) }
            } catch {
                report.problems.append("snapshot \(s.name): metadata copy: \(error)")
                report.unrepairable.append("snapshot \(s.name) is damaged; delete it")
            }
            if let keys, access(paths.metadata(s), F_OK) == 0 {
                do { try SnapshotSeal.verify(image: paths.metadata(s), s, keys: keys) } catch {
                    report.problems.append("tampered: \(error)")
                    report.unrepairable.append("the snapshot catalog or snapshot \(s.name)'s image was edited; restore the store from a snapshot export")
                }
            }
            for id in (try? deltaFileIDs(s)) ?? [] where access(paths.delta(s, id), F_OK) == 0 {
                do { _ = try DeltaWriter.openExisting(path: paths.delta(s, id), fileID: id) } catch {
                    report.problems.append("snapshot \(s.name): delta of file \(id): \(error)")
                    report.unrepairable.append("snapshot \(s.name) is damaged; delete it")
                }
            }
        }
        let known = Set(catalog.snapshots.map(\.directoryName))
        let entries = (try? directoryEntries(paths.root)) ?? []
        for name in entries where name.count == 8 && UInt32(name, radix: 16) != nil && !known.contains(name) {
            report.problems.append("stray snapshot directory \(name) (a create that did not finish)")
            guard repair else { continue }
            do {
                try removeTree(paths.root + "/" + name)
                report.repairs.append("removed stray snapshot directory \(name)")
            } catch {
                report.unrepairable.append("cannot remove \(paths.root)/\(name): \(error)")
            }
        }
    }

    private func deltaFileIDs(_ s: SnapshotInfo) throws -> Set<UInt64> {
        var ids = Set<UInt64>()
        for name in try directoryEntries(paths.deltaDirectory(s)) {
            if let id = UInt64(name.prefix(16), radix: 16), name.count == 16 || name.hasSuffix(".whole") { ids.insert(id) }
        }
        return ids
    }

    private func moveIfPresent(_ from: String, _ to: String) throws {
        guard rename(from, to) == 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "rename", path: from, errno: errno) }
    }
}

/// Errors of snapshot management, each with the name it concerns.
public enum SnapshotError: Error, Equatable, Sendable, CustomStringConvertible {
    case exists(String)
    case notFound(String)
    case mounted(String)
    case deleting(String)

    public var description: String {
        switch self {
        case .exists(let n): return "a snapshot named '\(n)' already exists"
        case .notFound(let n): return "no snapshot named '\(n)'"
        case .mounted(let n): return "snapshot '\(n)' is in use (mounted, being exported or deleted); unmount it or wait"
        case .deleting(let n): return "snapshot '\(n)' is being deleted; run 'kmsfs snapshot delete' again to finish"
        }
    }
}

/// A flock held for the life of the object, taken without waiting. A
/// mounted snapshot view and an export hold their snapshot's shared; a delete
/// holds the deleted and the next older snapshot's exclusive while it merges,
/// so no reader sees deltas change under it.
public final class FileLock: Sendable {
    private let fd: Int32

    /// nil when another process holds it in a conflicting mode.
    public init?(path: String, exclusive: Bool) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: path, errno: errno) }
        guard flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { return nil }
            throw MetaStoreError.io(operation: "flock", path: path, errno: e)
        }
    }

    /// `info`'s lock, shared; throws `SnapshotError.mounted` while a delete holds it.
    public static func shared(_ info: SnapshotInfo, paths: SnapshotPaths) throws -> FileLock {
        guard let lock = try FileLock(path: paths.lock(info), exclusive: false) else { throw SnapshotError.mounted(info.name) }
        return lock
    }

    deinit { close(fd) }

    /// Whether some process holds it (shared or exclusive).
    public static func isHeld(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }
}

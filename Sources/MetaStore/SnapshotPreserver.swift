import BlockCipher
import Locking
#if canImport(Glibc)
import Glibc
#endif

/// The live filesystem's side of snapshots: before a data unit that belongs
/// to the newest snapshot changes, its ciphertext is copied into that
/// snapshot's delta (copy-before-write at 4 KiB granularity), and a deleted
/// or truncated-to-zero file's ciphertext file is moved there whole (O(1)).
/// Older snapshots see the change through the chain (`SnapshotOverlay`).
public final class SnapshotPreserver: Sendable {
    public let paths: SnapshotPaths
    let dataDirectory: String
    /// The newest snapshot and an epoch that changes whenever it does, so
    /// open files drop their cached delta.
    private let state = Locked<(latest: SnapshotInfo?, epoch: UInt64)>((nil, 1))

    /// With integrity, the snapshots' seals are checked: the catalog's file
    /// id limits decide what is preserved (`SnapshotSeal`).
    let keys: IntegrityKeys?

    /// Checks every snapshot whose image is present against its seal (a mount: an edited catalog is refused).
    public init(storeRoot: String, keys: IntegrityKeys? = nil) throws {
        paths = SnapshotPaths(storeRoot: storeRoot)
        dataDirectory = StorePaths(root: storeRoot).data
        self.keys = keys
        let present = try presentSnapshots()
        if let keys { for s in present { try SnapshotSeal.verify(image: paths.metadata(s), s, keys: keys) } }
        state.withLock { $0 = (present.last, $0.epoch + 1) }
    }

    /// Re-reads the catalog (after a snapshot was created or deleted). The
    /// newest snapshot whose image is present is preserved for (a delete
    /// that crashed after removing its snapshot's directory leaves an entry
    /// with nothing to preserve for); with integrity, its seal is checked.
    public func reload() throws {
        let latest = try presentSnapshots().last
        if let keys, let latest { try SnapshotSeal.verify(image: paths.metadata(latest), latest, keys: keys) }
        state.withLock { $0 = (latest, $0.epoch + 1) }
    }

    private func presentSnapshots() throws -> [SnapshotInfo] {
        try SnapshotCatalog.load(paths).snapshots.filter { access(paths.metadata($0), F_OK) == 0 }
    }

    var current: (latest: SnapshotInfo?, epoch: UInt64) { state.withLock { $0 } }

    /// Whether a change to file `id` must preserve its old contents first.
    func protects(_ id: UInt64) -> SnapshotInfo? {
        guard let latest = current.latest, id < latest.fileIDLimit else { return nil }
        return latest
    }

    /// The delta writer for file `id` in the newest snapshot; nil when nothing
    /// needs preserving (a newer file, or its whole old file is already kept).
    func deltaWriter(for id: UInt64, liveFD: Int32) throws -> DeltaWriter? {
        guard let latest = protects(id) else { return nil }
        if access(paths.whole(latest, id), F_OK) == 0 { return nil }
        let path = paths.delta(latest, id)
        if let existing = try DeltaWriter.openExisting(path: path, fileID: id) { return existing }
        let units = (fileSize(liveFD) + UInt64(DataStore.blockSize) - 1) / UInt64(DataStore.blockSize)
        return try DeltaWriter.create(path: path, fileID: id, baseUnits: units)
    }

    /// Moves the live ciphertext file of `id` into the newest snapshot as its
    /// whole copy, if that snapshot needs the file and has no whole copy yet.
    /// Returns true when it moved (the caller then starts a new empty file).
    func keepWhole(_ id: UInt64, livePath: String) throws -> Bool {
        guard needsWhole(id), let latest = protects(id) else { return false }
        let whole = paths.whole(latest, id)
        guard rename(livePath, whole) == 0 else {
            if errno == ENOENT { return false }  // never written: nothing to keep
            throw MetaStoreError.io(operation: "rename", path: livePath, errno: errno)
        }
        try syncDirectory(containing: whole)
        try syncDirectory(containing: livePath)
        return true
    }

    /// Whether `keepWhole` would move the file (the newest snapshot needs it and has no whole copy).
    func needsWhole(_ id: UInt64) -> Bool {
        guard let latest = protects(id) else { return false }
        return access(paths.whole(latest, id), F_OK) != 0
    }

    /// A deleted file: moved into the newest snapshot when it still needs it, else unlinked.
    func retire(_ id: UInt64, livePath: String) throws {
        if try keepWhole(id, livePath: livePath) { return }
        guard unlink(livePath) == 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "unlink", path: livePath, errno: errno) }
    }
}

/// The read side: a snapshot's view of a file's ciphertext. Unit `u` of
/// snapshot S is the first of, for S and every newer snapshot in id order:
/// the unit held in that snapshot's delta; zeros when `u` is at or past that
/// delta's base; the unit of that snapshot's whole copy. Failing all, the
/// live file (unchanged since S).
///
/// Safe against a live filesystem writing at the same time: the caller reads
/// the live units first, and the writer makes the delta durable before it
/// changes a live unit, so a live unit that changed after the read started
/// is found in a delta here.
public final class SnapshotOverlay: Sendable {
    public let paths: SnapshotPaths
    public let snapshot: SnapshotInfo
    let dataDirectory: String
    private let chain: Locked<(stamp: [Int], snapshots: [SnapshotInfo])>

    public init(storeRoot: String, snapshot: SnapshotInfo) {
        paths = SnapshotPaths(storeRoot: storeRoot)
        self.snapshot = snapshot
        dataDirectory = StorePaths(root: storeRoot).data
        chain = Locked(([], []))
    }

    /// The snapshots whose deltas matter, oldest first; re-read when the catalog file changes.
    func currentChain() throws -> [SnapshotInfo] {
        var st = stat()
        let stamp = stat(paths.catalog, &st) == 0 ? [Int(st.st_ino), st.st_mtim.tv_sec, st.st_mtim.tv_nsec, Int(st.st_size)] : []
        if let cached = chain.withLock({ $0.stamp == stamp && !stamp.isEmpty ? $0.snapshots : nil }) { return cached }
        let snapshots = try SnapshotCatalog.load(paths).snapshots.filter { $0.id >= snapshot.id }
        chain.withLock { $0 = (stamp, snapshots) }
        return snapshots
    }

    /// Reads the snapshot's ciphertext of units `first ..< first + buffer.count/4096`
    /// of file `id` into `buffer` (holes as zero units). `liveFD` is the live
    /// ciphertext file, -1 when it does not exist.
    public func read(_ id: UInt64, liveFD: Int32, first: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let unit = DataStore.blockSize
        if liveFD >= 0 {
            try readFully(liveFD, into: buffer, at: first * UInt64(unit), path: "live file \(id)")
        } else {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
        }
        // Newest first, then resolved oldest first: a delete of a snapshot only
        // ever moves units into the next older one, so a unit in flight is
        // found in one of the two whatever the moment it moves (reading the
        // older first could miss it in both).
        var layers: [SnapshotLayer] = []
        defer { for layer in layers { layer.deallocate() } }
        for s in try currentChain().reversed() {
            if let layer = try SnapshotLayer(paths: paths, snapshot: s, id: id, first: first, byteCount: buffer.count) { layers.append(layer) }
        }
        for i in 0..<buffer.count / unit {
            let target = UnsafeMutableRawBufferPointer(rebasing: buffer[i * unit..<(i + 1) * unit])
            for layer in layers.reversed() { if layer.resolve(i, into: target) { break } }
        }
    }

    /// Opens the live ciphertext file of `id` read-only; -1 if it does not exist.
    public func openLive(_ id: UInt64) throws -> Int32 {
        let path = DataStore.path(in: dataDirectory, for: FileID(id))
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "open", path: path, errno: errno) }
        return fd
    }
}

/// What one snapshot holds of a range of a file's units: its delta's units
/// and base, and its whole copy's units (SnapshotOverlay.read).
private struct SnapshotLayer {
    let first: UInt64
    let base: UInt64
    let delta: UnsafeMutableRawBufferPointer?
    let whole: UnsafeMutableRawBufferPointer?

    /// nil when the snapshot holds nothing of the file.
    init?(paths: SnapshotPaths, snapshot s: SnapshotInfo, id: UInt64, first: UInt64, byteCount: Int) throws {
        let unit = DataStore.blockSize
        self.first = first
        func read(_ path: String, _ body: (Int32) throws -> Void) throws -> Bool {
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT { return false }
                throw MetaStoreError.io(operation: "open", path: path, errno: errno)
            }
            defer { close(fd) }
            try body(fd)
            return true
        }
        var base = UInt64.max
        var delta: UnsafeMutableRawBufferPointer?
        var whole: UnsafeMutableRawBufferPointer?
        do {
            let deltaPath = paths.delta(s, id)
            _ = try read(deltaPath) { fd in
                let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, unit), alignment: unit)
                delta = bytes
                try readFully(fd, into: UnsafeMutableRawBufferPointer(rebasing: bytes[0..<unit]), at: 0, path: deltaPath)
                base = try DeltaFormat.baseUnits(of: UnsafeRawBufferPointer(rebasing: bytes[0..<unit]), fileID: id, path: deltaPath)
                try readFully(fd, into: UnsafeMutableRawBufferPointer(rebasing: bytes[0..<byteCount]), at: DeltaFormat.offset(of: first), path: deltaPath)
            }
            let wholePath = paths.whole(s, id)
            _ = try read(wholePath) { fd in
                let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount, alignment: unit)
                whole = bytes
                try readFully(fd, into: bytes, at: first * UInt64(unit), path: wholePath)
            }
        } catch {
            delta?.deallocate()
            whole?.deallocate()
            throw error
        }
        guard delta != nil || whole != nil else { return nil }
        (self.base, self.delta, self.whole) = (base, delta, whole)
    }

    func deallocate() {
        delta?.deallocate()
        whole?.deallocate()
    }

    /// Unit `i` of the range as this snapshot holds it, into `target`; false
    /// when the snapshot does not hold it (unchanged since: look newer).
    func resolve(_ i: Int, into target: UnsafeMutableRawBufferPointer) -> Bool {
        let unit = DataStore.blockSize
        if let delta {
            let bytes = UnsafeRawBufferPointer(rebasing: delta[i * unit..<(i + 1) * unit])
            if !DataFile.isZero(bytes) {
                if DeltaFormat.isMarker(bytes) { target.initializeMemory(as: UInt8.self, repeating: 0) } else { target.copyMemory(from: bytes) }
                return true
            }
            if first + UInt64(i) >= base {
                target.initializeMemory(as: UInt8.self, repeating: 0)
                return true
            }
        }
        guard let whole else { return false }
        target.copyMemory(from: UnsafeRawBufferPointer(rebasing: whole[i * unit..<(i + 1) * unit]))
        return true
    }
}

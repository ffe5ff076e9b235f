import BlockCipher
import Locking
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Where file contents live: one ciphertext file per inode under `data/`,
/// named by the file id, fanned out over 256 subdirectories (docs/FORMAT.md "Data files").
public final class DataStore: Sendable {
    /// Plaintext and ciphertext data unit size in bytes.
    public static let blockSize = 4096
    public let directory: String
    let cipher: XTSCipher
    /// Set on a live filesystem that has snapshots (copy-before-write).
    public let preserver: SnapshotPreserver?
    /// Set on a snapshot view (read-only).
    public let overlay: SnapshotOverlay?
    /// Tags data units (integrity on); nil for XTS only.
    let unitMAC: MessageAuthenticator?
    /// Tags of closed files still waiting to settle, by file id (see `settleClosedFiles`).
    private let unsettled = Locked<(files: [UInt64: [UInt64: UnitTag]], units: Int)>(([:], 0))
    /// Beyond this many units waiting in closed files, `mustSettle` asks the
    /// filesystem to settle them now (with writers paused): bounds memory (about 3 MiB).
    static let unsettledLimit = 1 << 16

    /// Whether closed files hold so many unsettled units that they should be settled now.
    public var mustSettle: Bool { unsettled.withLock { $0.units > Self.unsettledLimit } }

    /// - Parameter unitMAC: the filesystem's data unit MAC key (integrity on).
    ///   Snapshot views do not verify units yet (their deltas keep no tags).
    public init(directory: String, cipher: XTSCipher, unitMAC: MessageAuthenticator? = nil, preserver: SnapshotPreserver? = nil, overlay: SnapshotOverlay? = nil) {
        self.directory = directory
        self.cipher = cipher
        self.unitMAC = overlay == nil ? unitMAC : nil
        self.preserver = preserver
        self.overlay = overlay
    }

    /// Creates the 256 fan-out directories of a new store.
    public static func createLayout(at directory: String) throws {
        for d in [directory] + (0..<256).map({ directory + "/" + [UInt8($0)].hexString }) {
            guard mkdir(d, 0o700) == 0 || errno == EEXIST else { throw MetaStoreError.io(operation: "mkdir", path: d, errno: errno) }
        }
    }

    /// The ciphertext file of `id`.
    public func path(for id: FileID) -> String { Self.path(in: directory, for: id) }

    static func path(in directory: String, for id: FileID) -> String {
        let hex = String(format16Hex: id.rawValue)
        return directory + "/" + String(hex.suffix(2)) + "/" + hex
    }

    /// Opens (creating if needed) the ciphertext file of `id`; in a snapshot
    /// view, opens it read-only if it exists.
    public func open(_ id: FileID) throws -> DataFile {
        let p = path(for: id)
        if let overlay {
            return DataFile(fd: try overlay.openLive(id.rawValue), id: id, cipher: cipher, path: p, overlay: overlay)
        }
        let tags = try unitMAC.map { try UnitTags(dataPath: p, fileID: id, mac: $0) }
        let fd = Glibc.open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: p, errno: errno) }
        return DataFile(fd: fd, id: id, cipher: cipher, path: p, preserver: preserver, tags: tags, store: self)
    }

    /// Tags every unit of the (closed) data file of `id` as it stands: for an
    /// imported file, whose chunks were checked against the bundle's manifest.
    public func tagAsItStands(_ id: FileID) throws {
        guard let unitMAC else { return }
        let p = path(for: id)
        let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: p, errno: errno) }
        defer { close(fd) }
        try UnitTags(dataPath: p, fileID: id, mac: unitMAC).tagAll(dataFD: fd)
    }

    /// Throws `.tampered` unless the tag file of `id` is the one `digest` (from
    /// the inode's sealed row) describes: an older or edited tag file is refused
    /// before any unit is read. A tag file longer than a file of `size` bytes
    /// can have is refused before it is read (nothing to check without integrity).
    public func verifyTagDigest(_ id: FileID, _ digest: [UInt8], size: UInt64) throws {
        guard let unitMAC else { return }
        let tags = try UnitTags(dataPath: path(for: id), fileID: id, mac: unitMAC)
        let units = (size + UInt64(Self.blockSize) - 1) / UInt64(Self.blockSize)
        guard tags.length <= units * UInt64(UnitTags.recordSize), MessageAuthenticator.equal(try tags.digest(), digest) else {
            throw MetaStoreError.tampered(what: "the unit tags of file \(id) are not the ones its inode recorded (an older or edited tag file)")
        }
    }

    /// SHA-256 of the tag file of `id` as it is on disk (see `verifyTagDigest`).
    public func tagDigest(_ id: FileID) throws -> [UInt8] {
        guard let unitMAC else { return [] }
        return try UnitTags(dataPath: path(for: id), fileID: id, mac: unitMAC).digest()
    }

    /// Flushes every data and tag file of the store (syncfs).
    public func syncAll() throws {
        let dir = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw MetaStoreError.io(operation: "open", path: directory, errno: errno) }
        defer { close(dir) }
        guard syncfs(dir) == 0 else { throw MetaStoreError.io(operation: "syncfs", path: directory, errno: errno) }
    }

    /// A closed file's tags that had not settled: kept until `settleClosedFiles`.
    func adoptUnsettled(_ id: FileID, _ units: [UInt64: UnitTag]) {
        unsettled.withLock { all in
            let before = all.files[id.rawValue]?.count ?? 0
            all.files[id.rawValue, default: [:]].merge(units) { $1 }
            all.units += (all.files[id.rawValue]?.count ?? 0) - before
        }
    }

    /// Makes every data and tag file durable (syncfs) and settles the tags of
    /// closed files, so no old copy of a unit they wrote still verifies. At
    /// unmount, or with every writer paused: a file reopened and written
    /// meanwhile must not have its records changed under it.
    public func settleClosedFiles() throws {
        let all = unsettled.withLock { all in defer { all = ([:], 0) }; return all.files }
        guard let unitMAC, !all.isEmpty else { return }
        var left = all
        do {
            try syncAll()
            for (id, units) in all {
                try UnitTags(dataPath: path(for: FileID(id)), fileID: FileID(id), mac: unitMAC).settle(units)
                left[id] = nil
            }
        } catch {
            for (id, units) in left { adoptUnsettled(FileID(id), units) }  // tried again at the next settle
            throw error
        }
    }

    /// The file ids of every ciphertext file present (for fsck).
    public func fileIDs() throws -> Set<UInt64> {
        var ids = Set<UInt64>()
        for sub in (0..<256).map({ directory + "/" + [UInt8($0)].hexString }) {
            for name in try directoryEntries(sub) where name.count == 16 {
                if let id = UInt64(name, radix: 16) { ids.insert(id) }
            }
        }
        return ids
    }

    /// Deletes the ciphertext of `id`; a missing file is fine (never written).
    /// With snapshots, a file the newest snapshot still needs is moved into it instead.
    public func remove(_ id: FileID) throws {
        let p = path(for: id)
        unsettled.withLock { all in
            all.units -= all.files.removeValue(forKey: id.rawValue)?.count ?? 0
        }
        if let preserver {
            try preserver.retire(id.rawValue, livePath: p)
        } else {
            guard unlink(p) == 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "unlink", path: p, errno: errno) }
        }
        unlink(p + ".tags")  // after the data file is gone: a crash between leaves a stray tag file, never untagged data
    }

    /// Bytes the backing filesystem reports for a data file (for tests of sparseness).
    public func allocatedBytes(_ id: FileID) -> Int64 {
        var st = stat()
        guard stat(path(for: id), &st) == 0 else { return 0 }
        return Int64(st.st_blocks) * 512
    }
}

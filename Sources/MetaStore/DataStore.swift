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
    public let unitMAC: MessageAuthenticator?
    /// Tags of closed files still waiting to settle, by file id (see `settleClosedFiles`).
    private let unsettled = Locked<(files: [UInt64: [UInt64: UnitTag]], units: Int)>(([:], 0))
    /// Beyond this many units waiting in closed files, `mustSettle` asks the
    /// filesystem to settle them now (with writers paused): bounds memory (about 3 MiB).
    static let unsettledLimit = 1 << 16

    /// Whether closed files hold so many unsettled units that they should be settled now.
    public var mustSettle: Bool { unsettled.withLock { $0.units > Self.unsettledLimit } }

    /// The open files that hold deferred writes (DataFile: copy-before-write
    /// with one delta sync per batch) and the bytes they hold, so the periodic
    /// flush visits only those and the total stays bounded.
    private let deferring = Locked((files: Set<UInt64>(), bytes: 0))
    /// Most bytes of held-back writes across all files; past it, writes go straight through.
    static let maxDeferredBytes = 32 << 20
    /// Their file ids (the inode numbers of regular files).
    public var filesWithDeferredWrites: [UInt64] { deferring.withLock { Array($0.files) } }
    /// Records `bytes` more (or fewer) held back by `id`; false (nothing recorded) when that would pass the cap.
    func noteDeferring(_ id: FileID, bytes: Int, empty: Bool = false) -> Bool {
        deferring.withLock { d in
            guard bytes <= 0 || d.bytes + bytes <= Self.maxDeferredBytes else { return false }
            d.bytes += bytes
            if empty { d.files.remove(id.rawValue) } else { d.files.insert(id.rawValue) }
            return true
        }
    }

    /// The live metadata, when it commits in groups: its shared transaction
    /// commits before any data or tag file changes (`beforeFileChange`).
    let metadata: MetadataStore?

    /// - Parameter unitMAC: the filesystem's data unit MAC key (integrity on).
    /// - Parameter metadata: the live metadata with group commit (the mount daemon).
    public init(directory: String, cipher: XTSCipher, unitMAC: MessageAuthenticator? = nil, preserver: SnapshotPreserver? = nil, overlay: SnapshotOverlay? = nil,
                metadata: MetadataStore? = nil) {
        self.metadata = metadata
        self.directory = directory
        self.cipher = cipher
        self.unitMAC = unitMAC
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
    /// view, opens it read-only if it exists, with what `verifyContent` returned.
    /// `inline`: the metadata holding inline files' units, and whether this one is inline.
    /// `fresh`: the file was just created, so it has no data or tag file yet
    /// (an inline one has none either): nothing to look for.
    public func open(_ id: FileID, verified: VerifiedContent? = nil, inline: (store: any InlineUnitStore, isInline: Bool)? = nil, fresh: Bool = false) throws -> DataFile {
        let p = path(for: id)
        let tagger = unitMAC.map { UnitTagger(fileID: id, mac: $0) }
        if let overlay {
            guard unitMAC == nil || verified != nil || inline?.isInline == true else { throw MetaStoreError.tampered(what: "file \(id) was opened unverified") }
            return DataFile(fd: try overlay.openLive(id.rawValue), id: id, cipher: cipher, path: p, overlay: overlay, verified: verified,
                            tagger: tagger, inline: inline)
        }
        let absent = fresh || inline?.isInline == true
        let tags = try unitMAC.map { try UnitTags(dataPath: p, fileID: id, mac: $0, openNow: !absent) }
        // Created at the first write that needs it: a file only created, or inline, has none.
        let fd = absent ? -1 : Glibc.open(p, O_RDWR | O_CLOEXEC)
        guard fd >= 0 || absent || errno == ENOENT else { throw MetaStoreError.io(operation: "open", path: p, errno: errno) }
        return DataFile(fd: fd, id: id, cipher: cipher, path: p, preserver: preserver, tags: tags, store: self, tagger: tagger, inline: inline)
    }

    /// Tags every unit of the (closed) data file of `id` as it stands (an
    /// imported file) and returns its content digest, which the caller
    /// checks against the file's sealed row.
    public func tagAsItStands(_ id: FileID) throws -> [UInt8] {
        guard let unitMAC else { return [] }
        let p = path(for: id)
        let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: p, errno: errno) }
        defer { close(fd) }
        return try UnitTags(dataPath: p, fileID: id, mac: unitMAC).tagAll(dataFD: fd)
    }

    /// Checks a file's data before its first open (integrity on), against
    /// the content digest its sealed row holds (`digest`, nil while the file's
    /// tags are pending). Live: the tag file must give that digest, so an
    /// older or edited tag file is refused before any unit is read (a tag
    /// file longer than a file of `size` bytes can have is refused before it
    /// is read); returns nil. Snapshot view: every unit the snapshot holds is
    /// read and tagged, and the tags are returned for `open`.
    public func verifyContent(_ id: FileID, size: UInt64, digest: [UInt8]?) throws -> VerifiedContent? {
        guard let unitMAC else { return nil }
        let units = (size + UInt64(Self.blockSize) - 1) / UInt64(Self.blockSize)
        if let overlay {
            guard let digest else { throw MetaStoreError.tampered(what: "file \(id) has no content digest in the snapshot") }
            let (computed, verified) = try snapshotContent(id, units: units, overlay: overlay, mac: unitMAC, keepTags: true)
            guard MessageAuthenticator.equal(computed, digest) else {
                throw MetaStoreError.tampered(what: "the data of file \(id) is not what the snapshot held (its content digest differs)")
            }
            return verified
        }
        guard let digest else { return nil }
        let tags = try UnitTags(dataPath: path(for: id), fileID: id, mac: unitMAC)
        guard tags.length <= units * UInt64(UnitTags.recordSize), MessageAuthenticator.equal(try tags.contentDigest(units: units, dataFD: nil), digest) else {
            throw MetaStoreError.tampered(what: "the unit tags of file \(id) are not the ones its inode recorded (an older or edited tag file)")
        }
        return nil
    }

    /// A snapshot view's file of `size` bytes: its content digest from the
    /// units the snapshot holds (an upgrade's snapshot images get it).
    public func snapshotContentDigest(_ id: FileID, size: UInt64) throws -> [UInt8] {
        guard let unitMAC, let overlay else { return [] }
        return try snapshotContent(id, units: (size + UInt64(Self.blockSize) - 1) / UInt64(Self.blockSize), overlay: overlay, mac: unitMAC, keepTags: false).0
    }

    /// A snapshot view's file: its content digest from the units the snapshot holds, and their tags.
    private func snapshotContent(_ id: FileID, units: UInt64, overlay: SnapshotOverlay, mac: MessageAuthenticator,
                                 keepTags: Bool) throws -> ([UInt8], VerifiedContent) {
        let digester = ContentDigester(UnitTagger(fileID: id, mac: mac), keepTags: keepTags)
        let live = try overlay.openLive(id.rawValue)
        defer { if live >= 0 { close(live) } }
        let batch: UInt64 = 256
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(batch) * Self.blockSize, alignment: Self.blockSize)
        defer { buffer.deallocate() }
        var first: UInt64 = 0
        while first < units {
            let count = Int(min(batch, units - first))
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * Self.blockSize])
            try overlay.read(id.rawValue, liveFD: live, first: first, into: part)
            try digester.add(ciphertext: UnsafeRawBufferPointer(part), first: first)
            first += UInt64(count)
        }
        return digester.finalizeKeeping()
    }

    /// The content digest of the live file `id` of `size` bytes, from its
    /// tag file, once its tags are settled; records a crash left with two
    /// tags are resolved against the data file and rewritten. The caller
    /// makes the tag files durable (`syncAll`) before it records the digest.
    public func contentDigest(_ id: FileID, size: UInt64) throws -> [UInt8] {
        guard let unitMAC else { return [] }
        let p = path(for: id)
        let tags = try UnitTags(dataPath: p, fileID: id, mac: unitMAC)
        let fd = Glibc.open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "open", path: p, errno: errno) }
        defer { if fd >= 0 { close(fd) } }
        let units = (size + UInt64(Self.blockSize) - 1) / UInt64(Self.blockSize)
        guard tags.length <= units * UInt64(UnitTags.recordSize) else {
            throw MetaStoreError.tampered(what: "the tag file of file \(id) is longer than a file of \(size) bytes needs")
        }
        // A missing data file reads as holes (a file whose units were all cut).
        return try tags.contentDigest(units: units, dataFD: fd >= 0 ? fd : nil)
    }

    /// Flushes every data and tag file of the store (syncfs).
    public func syncAll() throws {
        let dir = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw MetaStoreError.io(operation: "open", path: directory, errno: errno) }
        defer { close(dir) }
        guard syncfs(dir) == 0 else { throw MetaStoreError.io(operation: "syncfs", path: directory, errno: errno) }
    }

    /// A file cut to `units` units: tags of closed handles' units past the cut have nothing left to settle.
    func dropUnsettled(_ id: FileID, from units: UInt64) {
        unsettled.withLock { all in
            guard let kept = all.files[id.rawValue] else { return }
            let left = kept.filter { $0.key < units }
            all.units -= kept.count - left.count
            all.files[id.rawValue] = left.isEmpty ? nil : left
        }
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
            try beforeFileChange()
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

    /// The barrier of group commit: the metadata that describes the files
    /// (sizes, names, inline units) is committed before they change, so on
    /// disk the files never run ahead of it.
    func beforeFileChange() throws { try metadata?.commitPending() }

    /// Deletes the ciphertext of `id`; a missing file is fine (never written).
    /// With snapshots, a file the newest snapshot still needs is moved into it instead.
    public func remove(_ id: FileID) throws {
        let p = path(for: id)
        unsettled.withLock { all in
            all.units -= all.files.removeValue(forKey: id.rawValue)?.count ?? 0
        }
        // Most removed files are inline or were never written: no file, nothing to order.
        guard access(p, F_OK) == 0 || access(p + ".tags", F_OK) == 0 else { return }
        try beforeFileChange()
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

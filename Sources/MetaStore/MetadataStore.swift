import BlockCipher
import Locking
#if canImport(Glibc)
import Glibc
#endif

/// The crash-safe metadata of one filesystem (SQLite in WAL mode): inodes,
/// directory entries with encrypted names, symlinks and xattrs. Thread-safe:
/// every call runs under one mutex, in one SQLite transaction where it writes.
public final class MetadataStore: Sendable {
    let catalogLock: Locked<Catalog>
    public let path: String
    /// A few MiB kept allocated so that metadata can still be committed (and
    /// space freed with unlink) when the backing store is full.
    public let reservePath: String?
    /// Size of the reserve file in bytes.
    public static let reserveBytes = 4 << 20
    /// Whether the reserve may be missing (released, or not made yet): refills look only then.
    private let reserveMayBeMissing = Locked(true)
    /// Raised when a shared transaction opens (group commit): the committer waits for it.
    private let sharedTransactionOpened = Wakeup()

    /// Opens (or with `create`, initialises) the database at `path`.
    /// - Parameter exclusive: hold SQLite's lock for the connection's life
    ///   (locking_mode=EXCLUSIVE). The mount daemon, which already owns the
    ///   store through its flock, uses it: it saves ~10 fcntl calls per transaction.
    /// - Parameter readOnly: a snapshot's frozen copy; nothing is ever written.
    /// - Parameter checking: fsck: open a database whose inode counter is not
    ///   above its inodes, so that `check` can report and raise it.
    /// - Parameter integrity: the filesystem's authentication keys: schema 2
    ///   (sealed rows, tagged entries and counters); nil for schema 1.
    /// - Parameter resealRows: accept rows that do not match the sealed row
    ///   root (`mount --accept-rollback`) and seal them as they are.
    /// - Parameter groupCommit: operations share commits (`GroupCommit`; the
    ///   mount daemon, which runs `runCommitter`).
    public init(path: String, names: NameCipher, integrity: IntegrityKeys? = nil, create: Bool, rootOwner: (uid: UInt32, gid: UInt32) = (0, 0),
                reservePath: String? = nil, exclusive: Bool = false, readOnly: Bool = false, checking: Bool = false, resealRows: Bool = false,
                groupCommit: Bool = false) throws {
        self.path = path
        self.reservePath = reservePath
        let rows = RowCodec(keys: integrity)
        let db = create ? try SQLiteDatabase(path: path, create: true) : try MetadataSchema.open(path, readOnly: readOnly, version: rows.schemaVersion)
        if exclusive { try db.execute("PRAGMA locking_mode=EXCLUSIVE") }
        if readOnly {
            try db.execute("PRAGMA cache_size=-16000; PRAGMA temp_store=MEMORY")
        } else {
            try db.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16000; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=8192")
        }
        if create {
            try db.execute(MetadataSchema.create(version: rows.schemaVersion))
            try db.transaction {
                try db.query("INSERT INTO meta(key, value) VALUES('schema_version', ?), ('next_ino', 2)", [.int(rows.schemaVersion)])
                if integrity != nil {
                    let instance = try SecureRandom.bytes(16)
                    try db.query("INSERT INTO meta(key, value) VALUES('generation', 1)")
                    try db.query("INSERT INTO seals(key, value) VALUES('instance', ?)", [.blob(instance)])
                    try db.query("INSERT INTO seals(key, value) VALUES('rows', ?)", [.blob(RowRoot.zero.bytes)])
                    try db.query("INSERT INTO seals(key, value) VALUES('counters', ?)",
                                 [.blob(rows.countersTag(generation: 1, nextIno: 2, instance: instance, root: .zero))])
                }
            }
        } else {
            let version = try? db.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
            guard version == rows.schemaVersion else {
                throw MetaStoreError.database(operation: "open \(path)", message: "unknown or missing schema version \(version.map { String(describing: $0) } ?? "none")")
            }
        }
        let catalog = try Catalog(db: db, names: names, rows: rows, tolerateCounter: checking, resealRows: resealRows && !readOnly)
        if create {
            let now = Timestamp.now()
            try catalog.transaction {
                try catalog.insert(InodeAttributes(ino: .root, mode: 0o040755, nlink: 2, uid: rootOwner.uid, gid: rootOwner.gid, rdev: 0, size: 0,
                                                   atime: now, mtime: now, ctime: now, parent: .root))
            }
        }
        if groupCommit && !readOnly {
            catalog.groupCommit = GroupCommit(databasePath: path)
            catalog.onBatchOpen = { [sharedTransactionOpened] in sharedTransactionOpened.raise() }
        }
        catalogLock = Locked(catalog)
        refillReserve()
    }

    /// Runs `body` under the lock; on ENOSPC, releases the reserve and retries
    /// once. Only operations that free space (unlink, rmdir, rename, purge)
    /// may spend the reserve: it exists so a full store can still be cleaned up.
    func catalog<R>(useReserve: Bool = false, _ body: (Catalog) throws -> R) throws -> R {
        do {
            return try catalogLock.withLock { c in
                if let failure = c.failure { throw failure }
                return try body(c)
            }
        } catch MetaStoreError.io(_, _, ENOSPC) where useReserve && reservePath.map({ access($0, F_OK) == 0 }) == true {
            unlink(reservePath!)
            reserveMayBeMissing.withLock { $0 = true }
            return try catalogLock.withLock { try body($0) }
        }
    }

    /// Recreates the reserve file if it is missing and space allows.
    public func refillReserve() {
        guard let reservePath, reserveMayBeMissing.withLock({ $0 }) else { return }
        guard access(reservePath, F_OK) != 0 else { return reserveMayBeMissing.withLock { $0 = false } }
        let fd = open(reservePath + ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<(Self.reserveBytes >> 20) {
            guard chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == chunk.count else {
                unlink(reservePath + ".tmp")
                return
            }
        }
        if Glibc.rename(reservePath + ".tmp", reservePath) == 0 { reserveMayBeMissing.withLock { $0 = false } }
    }

    public func attributes(_ ino: InodeNumber) throws -> InodeAttributes { try catalog { try $0.attributes(ino) } }

    public func lookup(parent: InodeNumber, name: [UInt8]) throws -> InodeAttributes {
        try catalog { try $0.lookup(parent, name) }
    }

    /// Creates a file, directory, FIFO, device node or symlink (by `mode`'s type bits).
    public func makeNode(parent: InodeNumber, name: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, rdev: UInt64 = 0, symlinkTarget: [UInt8]? = nil) throws -> InodeAttributes {
        try catalog { try $0.makeNode(parent: parent, name: name, mode: mode, uid: uid, gid: gid, rdev: rdev, symlinkTarget: symlinkTarget) }
    }

    public func link(_ ino: InodeNumber, newParent: InodeNumber, newName: [UInt8]) throws -> InodeAttributes {
        try catalog { try $0.link(ino, newParent: newParent, newName: newName) }
    }

    /// unlink (directory false) or rmdir (directory true); returns the inode with its new link count.
    public func remove(parent: InodeNumber, name: [UInt8], directory: Bool) throws -> InodeAttributes {
        try catalog(useReserve: true) { try $0.remove(parent: parent, name: name, directory: directory) }
    }

    /// rename with `RenameFlags`; returns the replaced inode, if any.
    public func rename(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], flags: UInt32) throws -> InodeAttributes? {
        try catalog(useReserve: true) { try $0.rename(parent: parent, name: name, newParent: newParent, newName: newName, flags: flags) }
    }

    public func setAttributes(_ ino: InodeNumber, _ changes: AttributeChanges) throws -> InodeAttributes {
        try catalog { try $0.setAttributes(ino, changes) }
    }

    /// Records a data write; see `Catalog.recordWrite` for the ordering rule.
    public func recordWrite(_ ino: InodeNumber, newSize: UInt64?) throws -> InodeAttributes {
        try catalog { try $0.recordWrite(ino, newSize: newSize) }
    }

    public func readDirectory(_ ino: InodeNumber, after cookie: Int64, limit: Int) throws -> [DirectoryEntry] {
        try catalog { try $0.readDirectory(ino, after: cookie, limit: limit) }
    }

    public func readLink(_ ino: InodeNumber) throws -> [UInt8] { try catalog { try $0.readLink(ino) } }

    public func setXattr(_ ino: InodeNumber, name: [UInt8], value: [UInt8], flags: Int32) throws {
        try catalog { try $0.setXattr(ino, name: name, value: value, flags: flags) }
    }

    public func getXattr(_ ino: InodeNumber, name: [UInt8]) throws -> [UInt8] { try catalog { try $0.getXattr(ino, name: name) } }
    public func listXattrs(_ ino: InodeNumber) throws -> [[UInt8]] { try catalog { try $0.listXattrs(ino) } }
    public func removeXattr(_ ino: InodeNumber, name: [UInt8]) throws { try catalog { try $0.removeXattr(ino, name: name) } }

    /// Deletes an unreferenced inode's records.
    public func purge(_ ino: InodeNumber) throws { try catalog(useReserve: true) { try $0.purge(ino) } }

    /// Inodes with no names left (open-but-unlinked at a crash).
    public func orphans() throws -> [InodeNumber] { try catalog { try $0.orphans() } }

    /// Number of inodes in use.
    public func inodeCount() throws -> UInt64 { try catalog { try $0.inodeCount() } }

    /// Before a file's records change (write, truncate, punch): its content digest
    /// stops being current, durably, before any record is written.
    public func markTagsPending(_ ino: InodeNumber) throws {
        try catalog { c in
            var a = try c.attributes(ino)
            guard c.rows.keys != nil, a.contentDigest != nil, !a.isInline else { return }  // an inline file's digest moves with its unit
            a.contentDigest = nil
            // Durable before any record changes: a power loss must not leave the
            // old digest beside a changed tag file (the file would not open).
            try c.transactionCommittedDurably { try c.store(a) }
        }
    }

    /// Regular files whose content digest is not current (schema 2; none on schema 1).
    public func filesWithPendingTags() throws -> [InodeNumber] {
        try catalog { c in
            guard c.rows.keys != nil else { return [] }
            var out: [InodeNumber] = []
            try c.db.query("SELECT ino FROM inodes WHERE tags_pending = 1 ORDER BY ino") { out.append(InodeNumber(UInt64(bitPattern: $0.int(0)))) }
            return out
        }
    }

    /// Records the content digests of files whose tag files are durable and settled, in one transaction.
    public func setContentDigests(_ digests: [(InodeNumber, [UInt8])]) throws {
        guard !digests.isEmpty else { return }
        try catalog { c in
            try c.transaction {
                for (ino, digest) in digests {
                    guard var a = try? c.attributes(ino), a.isRegular else { continue }
                    a.contentDigest = digest
                    try c.store(a)
                }
            }
        }
    }

    /// Regular files whose content digest is not recorded, in the closed store
    /// or snapshot image at `path` (0 without integrity): files a crash left
    /// pending, whose digests the next mount's unmount records.
    public static func filesAwaitingDigests(inStore path: String) throws -> Int {
        let db = try MetadataSchema.open(path, readOnly: true)
        guard try MetadataSchema.verify(db) >= 2 else { return 0 }
        return Int(try db.scalar("SELECT count(*) FROM inodes WHERE tags_pending = 1") ?? 0)
    }

    /// Every regular file's inode number, ascending (scrub).
    public func regularFiles() throws -> [InodeNumber] {
        try catalog { c in
            var out: [InodeNumber] = []
            try c.db.query("SELECT ino FROM inodes WHERE (mode & \(S_IFMT)) = \(S_IFREG) ORDER BY ino") { out.append(InodeNumber(UInt64(bitPattern: $0.int(0)))) }
            return out
        }
    }

    /// Rows in the inode, entry, symlink and xattr tables (scrub's count).
    public func rowCount() throws -> Int {
        try catalog { c in
            try ["inodes", "entries", "symlinks", "xattrs"].reduce(0) { $0 + Int(try c.db.scalar("SELECT count(*) FROM \($1)") ?? 0) }
        }
    }

    /// Consistency check of the metadata and the ciphertext files of `data` (fsck).
    public func check(repair: Bool, data: DataStore) throws -> ConsistencyReport {
        let ids = try data.fileIDs()
        return try catalog { try $0.check(repair: repair, dataFileIDs: ids) { try data.remove(FileID($0)) } }
    }

    /// Rows kmsfs never writes (edited or damaged), one line each; empty when none.
    public func invalidRows() throws -> [String] { try catalog { try $0.invalidRows() } }

    /// Drops a cached inode the kernel has forgotten (after flushing it).
    public func evict(_ ino: InodeNumber) {
        catalogLock.withLock { c in
            if c.dirty.contains(ino.rawValue) { try? c.flushDirty() }
            c.cache[ino.rawValue] = nil
            c.inodeElements[ino.rawValue] = nil
        }
    }

    /// Writes a consistent copy of the metadata to `target` (a snapshot's
    /// image): its next inode number (every file id below it may appear in
    /// the copy) and, with integrity, the counters' tag it holds.
    public func writeImage(to target: String) throws -> SnapshotImage {
        try catalogLock.withLock { c in
            if let failure = c.failure { throw failure }
            try c.flushDirty()
            try c.advanceGeneration()
            try c.commitShared()
            try c.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            c.durableGeneration = c.generation
            c.committedSinceSync = false
            try c.db.copy(to: target)
            return SnapshotImage(fileIDLimit: c.nextIno, countersTag: try c.countersTagAsStored())
        }
    }

    /// The same for a store without integrity that is not open (no key needed: nothing is decrypted).
    public static func writeImage(of path: String, to target: String) throws -> SnapshotImage {
        let db = try MetadataSchema.open(path, readOnly: false, version: 1)
        try db.copy(to: target)
        return SnapshotImage(fileIDLimit: UInt64(try db.scalar("SELECT value FROM meta WHERE key = 'next_ino'") ?? 2))
    }

    /// Calls `body` with the inode number and size of every regular file in
    /// the database at `path` (a snapshot image) whose data is in a data file,
    /// in inode order, streaming. Inline files' data is in the image itself.
    public static func forEachRegularFile(inImage path: String, _ body: (UInt64, UInt64) throws -> Void) throws {
        let db = try MetadataSchema.open(path, readOnly: true)
        try db.query("SELECT ino, size FROM inodes WHERE \(try dataFileCondition(db)) ORDER BY ino") { row in
            try body(UInt64(bitPattern: row.int(0)), UInt64(bitPattern: row.int(1)))
        }
    }

    /// Regular files with a data file: not inline (schema 2 keeps small files' units in `inline_units`).
    private static func dataFileCondition(_ db: SQLiteDatabase) throws -> String {
        let regular = "(mode & \(S_IFMT)) = \(S_IFREG)"
        return try MetadataSchema.verify(db) >= 2 ? regular + " AND ino NOT IN (SELECT ino FROM inline_units)" : regular
    }

    /// Number and total size of the regular files in the database at `path` that have a data file.
    public static func regularFileTotals(inImage path: String) throws -> (files: Int, bytes: UInt64) {
        let db = try MetadataSchema.open(path, readOnly: true)
        var result = (files: 0, bytes: UInt64(0))
        try db.query("SELECT count(*), coalesce(sum((size + 4095) / 4096 * 4096), 0) FROM inodes WHERE \(try dataFileCondition(db))") { row in
            result = (Int(row.int(0)), UInt64(bitPattern: row.int(1)))
        }
        return result
    }

    /// Moves the next inode number up by `offset` (import: see Importer). The
    /// caller has the store to itself.
    public func advanceInodeNumbers(by offset: UInt64) throws {
        try catalog { c in
            guard offset < UInt64(InodeAttributes.maxInodeNumber) - c.nextIno else {
                throw MetaStoreError.untrustedMetadata(path: path, problem: "has no room to move its inode numbers up by \(offset)")
            }
            try c.transaction { try c.writeCounters(nextIno: c.reservedIno + offset) }
            c.reservedIno += offset
            c.nextIno = c.reservedIno
        }
    }

    /// Writes pending timestamp changes.
    public func flush() throws { try catalog { try $0.flushDirty() } }

    /// Commits the shared transaction, if one is open (group commit): before
    /// a data or tag file changes, and by the committer.
    public func commitPending() throws { try catalog { try $0.commitShared() } }

    /// The committer's loop (the mount daemon runs it on a thread of its
    /// own, forever): with group commit, each shared transaction commits
    /// `GroupCommit.window` after it opened; pending timestamps are written
    /// every `timestampInterval` seconds, so a daemon crash loses at most that
    /// much timestamp history.
    public func runCommitter(timestampInterval: Int, log: (Error) -> Void) -> Never {
        func now() -> Int { MonotonicClock.seconds() }
        var timestampsDue = now() + timestampInterval
        while true {
            if sharedTransactionOpened.wait(seconds: 1) {
                usleep(GroupCommit.window)
                do { try commitPending() } catch { log(error) }
            }
            if now() >= timestampsDue {
                timestampsDue = now() + timestampInterval
                do { try flush() } catch { log(error) }
            }
        }
    }

    /// Makes every committed change durable. With integrity, the generation
    /// moves up first, so every durable state has its own number. An fsync
    /// (`checkpoint: false`) commits that advance with synchronous=FULL: one
    /// fsync of the WAL, which holds every earlier commit too. Otherwise (an
    /// unmount, fsck, or a store without generations) the WAL is
    /// checkpointed into the database, which fsyncs both. `dataOnly` (an
    /// fdatasync) leaves pending timestamps in memory, and when nothing was
    /// committed since the last sync there is nothing to make durable: no
    /// new generation, no write.
    /// `advance: false` (fsck without --repair, read-only mounts) writes no new generation.
    public func sync(advance: Bool = true, checkpoint: Bool = true, dataOnly: Bool = false) throws {
        try catalogLock.withLock { c in
            if let failure = c.failure { throw failure }  // (a lost commit must not pass for a sync)
            if !dataOnly { try c.flushDirty() }
            try c.commitShared()
            if dataOnly && !c.committedSinceSync { return }
            if advance && c.rows.keys != nil && !checkpoint {
                // A failed fsync may leave the commit on disk all the same: the generation would be reused.
                do { try c.transactionCommittedDurably { try c.advanceGeneration() } } catch {
                    c.lose(error)
                    throw error
                }
            } else {
                if advance { try c.advanceGeneration() }
                try c.commitShared()
                try c.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            }
            c.durableGeneration = c.generation
            c.committedSinceSync = false
        }
    }

    /// The store's generation (0 without integrity).
    public var generation: UInt64 { catalogLock.withLock { $0.generation } }

    /// The newest generation known to be on disk (after a checkpoint): what
    /// rollback anchors may record, so a power loss never leaves an anchor
    /// ahead of the store.
    public var durableGeneration: UInt64 { catalogLock.withLock { $0.durableGeneration } }

    /// Which copy of the filesystem this store is (16 bytes; empty without integrity).
    public var instance: [UInt8] { catalogLock.withLock { $0.instance } }

    /// Makes the store a new instance (import).
    public func renewInstance() throws { try catalogLock.withLock { try $0.renewInstance() } }

    /// Whether rows are sealed and tagged (schema 2).
    public var hasIntegrity: Bool { catalogLock.withLock { $0.rows.keys != nil } }
}

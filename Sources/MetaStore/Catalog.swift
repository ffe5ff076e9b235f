import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// The unsynchronised core of the metadata store: SQLite plus an inode cache.
/// `MetadataStore` owns one behind a lock; nothing else touches it.
final class Catalog: @unchecked Sendable {
    // @unchecked: only ever used inside MetadataStore's mutex.
    static let nameMax = 255
    let db: SQLiteDatabase
    let names: NameCipher
    /// Schema 1 or 2: how rows are written and checked.
    let rows: RowCodec
    var cache: [UInt64: InodeAttributes] = [:]
    /// Inodes whose timestamps changed in memory only (writes that did not grow the file).
    var dirty: Set<UInt64> = []
    var nextIno: UInt64
    /// The stored `next_ino`: a committed high-water mark above every number
    /// ever handed out. Numbers are reserved in batches so most creates do not
    /// rewrite it; after a crash the unused rest of a batch is skipped, never reused
    /// (an inode number is also the file id in the XTS tweak).
    var reservedIno: UInt64
    /// The `next_ino` as written in this transaction (or committed): what the counters' tag covers.
    private(set) var writtenNextIno: UInt64
    static let inodeBatch: UInt64 = 256
    /// The store's generation (schema 2; 0 on schema 1): it only grows, at
    /// every sync, snapshot and unmount, and is anchored outside the store so
    /// that a rolled-back store is refused (docs/FORMAT.md "Rollback").
    private(set) var generation: UInt64 = 0
    /// The generation as of the last checkpoint (see `MetadataStore.durableGeneration`).
    var durableGeneration: UInt64 = 0
    /// This copy of the filesystem (schema 2): see `RowCodec.countersTag`.
    private(set) var instance: [UInt8] = []
    /// The row root (schema 2, `RowRoot`) with this transaction's changes, and as committed.
    var rowRoot = RowRoot.zero
    private var committedRoot = RowRoot.zero
    /// The root that `seals('rows')` holds in the open transaction: a commit
    /// rewrites the seal unless it is `rowRoot` (changes that cancel out after
    /// a counters write, such as a create and unlink in one group commit,
    /// still need the seal put back).
    private var sealedRoot = RowRoot.zero
    /// Each cached inode's element as its row is on disk (so a rewrite need not read it back).
    var inodeElements: [UInt64: RowRoot] = [:]
    private var transactionDepth = 0

    /// - Parameter resealRows: when the rows do not sum to the stored root
    ///   (a row was put back or replaced), accept them and store their root
    ///   (`mount --accept-rollback`) instead of refusing.
    init(db: SQLiteDatabase, names: NameCipher, rows: RowCodec, tolerateCounter: Bool = false, resealRows: Bool = false) throws {
        self.db = db
        self.names = names
        self.rows = rows
        let counter = try db.scalar("SELECT value FROM meta WHERE key = 'next_ino'") ?? 0
        highestIno = try db.scalar("SELECT max(ino) FROM inodes") ?? 0
        nextIno = UInt64(max(counter, 0))
        reservedIno = nextIno
        writtenNextIno = nextIno
        if rows.keys != nil {
            generation = UInt64(max(0, try db.scalar("SELECT value FROM meta WHERE key = 'generation'") ?? 0))
            var tag: [UInt8] = []
            try db.query("SELECT value FROM seals WHERE key = 'counters'") { tag = $0.blob(0) }
            try db.query("SELECT value FROM seals WHERE key = 'instance'") { self.instance = $0.blob(0) }
            var stored: [UInt8] = []
            try db.query("SELECT value FROM seals WHERE key = 'rows'") { stored = $0.blob(0) }
            durableGeneration = generation
            guard instance.count == 16, let root = RowRoot(bytes: stored),
                  MessageAuthenticator.equal(try rows.countersTag(generation: generation, nextIno: nextIno, instance: instance, root: root), tag) else {
                throw MetaStoreError.tampered(what: "the metadata's counters (generation \(generation), next inode \(nextIno)) do not authenticate")
            }
            (rowRoot, committedRoot, sealedRoot) = (root, root, root)
            try verifyRowRoot(reseal: resealRows)
        }
        // Inode numbers are file ids in the XTS tweak: a counter at or below an
        // inode in use would hand out a number twice. Only fsck (to report and
        // raise it) may open such a database.
        if !tolerateCounter, let problem = counterProblem { throw MetaStoreError.untrustedMetadata(path: db.path, problem: problem) }
    }

    /// The highest inode number in use when the database was opened.
    let highestIno: Int64

    /// Why the stored inode counter cannot be trusted, or nil.
    var counterProblem: String? {
        guard nextIno <= UInt64(InodeAttributes.maxInodeNumber) else { return "has next inode number \(nextIno), beyond 2^62" }
        return Int64(bitPattern: nextIno) > highestIno ? nil : "has next inode number \(nextIno), not above its highest inode \(highestIno)"
    }

    /// Set in the mount daemon: operations share commits (`GroupCommit`).
    var groupCommit: GroupCommit?
    /// Called when a shared transaction opens (wakes the committer).
    var onBatchOpen: (() -> Void)?
    /// Why a shared commit failed; from then on every call fails with it.
    private(set) var failure: MetaStoreError?
    /// Whether anything was committed since the last sync made the store
    /// durable (an fdatasync with nothing to make durable writes nothing).
    var committedSinceSync = false

    /// A write transaction; inside one, a nested call joins it. On commit a
    /// changed row root is stored with the counters' tag, in the same
    /// transaction; on rollback the cache is dropped, since it may hold values
    /// that were never committed. With group commit the transaction is a
    /// savepoint in the shared one, and commits with it.
    func transaction<R>(_ body: () throws -> R) throws -> R {
        if transactionDepth > 0 { return try body() }
        if let failure { throw failure }
        transactionDepth = 1
        defer { transactionDepth = 0 }
        if try joinSharedTransaction() { return try savepoint(body) }
        do {
            let result = try db.transaction {
                let result = try body()
                if rowRoot != sealedRoot { try writeRootSeal() }
                return result
            }
            committedRoot = rowRoot
            committedSinceSync = true
            return result
        } catch {
            dropCache()
            (rowRoot, sealedRoot) = (committedRoot, committedRoot)
            writtenNextIno = reservedIno
            throw error
        }
    }

    /// Whether this operation joins a shared transaction (opening one if needed).
    private func joinSharedTransaction() throws -> Bool {
        guard let group = groupCommit else { return false }
        if group.open != nil { return true }
        guard group.hasRoom() else { return false }
        try db.execute("BEGIN IMMEDIATE")
        groupCommit?.open = 0
        onBatchOpen?()
        return true
    }

    /// One operation inside the shared transaction: a failure undoes it alone.
    private func savepoint<R>(_ body: () throws -> R) throws -> R {
        let (root, sealed, counter) = (rowRoot, sealedRoot, writtenNextIno)
        let result: R
        do {
            try db.execute("SAVEPOINT operation")
            result = try body()
            try db.execute("RELEASE operation")
        } catch {
            if db.inTransaction {
                try? db.execute("ROLLBACK TO operation")
                try? db.execute("RELEASE operation")
                dropCache()
                (rowRoot, sealedRoot, writtenNextIno) = (root, sealed, counter)
            } else {
                lose(error)  // SQLite rolled the shared transaction back (a full disk, an I/O error)
            }
            throw error
        }
        let joined = (groupCommit?.open ?? 0) + 1
        groupCommit?.open = joined
        if joined >= GroupCommit.maxOperations { try commitShared() }
        return result
    }

    /// Commits the shared transaction, if one is open, with the row root's seal.
    func commitShared() throws {
        guard groupCommit?.open != nil else { return }
        do {
            if rowRoot != sealedRoot { try writeRootSeal() }
            try db.execute("COMMIT")
        } catch {
            lose(error)
            throw failure ?? MetaStoreError.posix(EIO)
        }
        groupCommit?.open = nil
        committedRoot = rowRoot
        committedSinceSync = true
    }

    /// Runs `body` as a transaction of its own, committed when it returns
    /// (after any shared one): a change that must be on disk before the
    /// caller goes on (see `MetadataStore.markTagsPending`).
    func transactionCommittedAtOnce<R>(_ body: () throws -> R) throws -> R {
        try commitShared()
        let group = groupCommit
        groupCommit = nil
        defer { groupCommit = group }
        return try transaction(body)
    }

    /// `transactionCommittedAtOnce` with synchronous=FULL: on disk (the WAL
    /// fsync'ed, with every earlier commit in it) when it returns.
    func transactionCommittedDurably<R>(_ body: () throws -> R) throws -> R {
        try commitShared()  // (the pragma cannot change inside a transaction)
        try db.execute("PRAGMA synchronous=FULL")
        defer { try? db.execute("PRAGMA synchronous=NORMAL") }
        return try transactionCommittedAtOnce(body)
    }

    /// A shared commit (or a durable one, which may have reached the disk
    /// all the same) failed: its operations are gone, as in a crash. The
    /// kernel still holds what they returned, so the mount serves nothing more.
    func lose(_ error: Error) {
        if db.inTransaction { try? db.execute("ROLLBACK") }
        failure = .commitFailed(operations: groupCommit?.open ?? 0, reason: "\(error)")
        groupCommit?.open = nil
        dropCache()
        (rowRoot, sealedRoot) = (committedRoot, committedRoot)
    }

    /// After a rollback: cached rows may hold values that were never
    /// committed. Pending timestamps (kept in memory only) are kept, on the
    /// rows as the database has them.
    private func dropCache() {
        let times = dirty.compactMap { cache[$0].map { ($0.ino, $0.atime, $0.mtime, $0.ctime) } }
        cache.removeAll()
        dirty.removeAll()
        inodeElements.removeAll()
        for (ino, atime, mtime, ctime) in times {
            guard var a = try? attributes(ino) else { continue }
            (a.atime, a.mtime, a.ctime) = (atime, mtime, ctime)
            cache[ino.rawValue] = a
            dirty.insert(ino.rawValue)
        }
    }

    deinit {
        // The daemon syncs before it exits; this keeps a shared transaction of a store closed otherwise.
        try? commitShared()
    }

    /// Writes the stored next inode number (and, on schema 2, the counters' tag).
    func writeCounters(nextIno stored: UInt64) throws {
        try db.query("INSERT OR REPLACE INTO meta(key, value) VALUES('next_ino', ?)", [.int(Int64(bitPattern: stored))])
        writtenNextIno = stored
        try writeCountersTag(generation: generation, nextIno: stored)
    }

    /// The counters' tag as the committed `seals('counters')` holds it (nil without integrity).
    func countersTagAsStored() throws -> [UInt8]? {
        guard rows.keys != nil else { return nil }
        return try rows.countersTag(generation: generation, nextIno: writtenNextIno, instance: instance, root: rowRoot)
    }

    /// The row root and the counters' tag over it: what a transaction that changed rows adds at its commit.
    private func writeRootSeal() throws {
        try db.query("INSERT OR REPLACE INTO seals(key, value) VALUES('rows', ?)", [.blob(rowRoot.bytes)])
        sealedRoot = rowRoot
        try db.query("INSERT OR REPLACE INTO seals(key, value) VALUES('counters', ?)",
                     [.blob(rows.countersTag(generation: generation, nextIno: writtenNextIno, instance: instance, root: rowRoot))])
    }

    func writeCountersTag(generation: UInt64, nextIno stored: UInt64, instance: [UInt8]? = nil) throws {
        guard rows.keys != nil else { return }
        let instance = instance ?? self.instance
        try db.query("INSERT OR REPLACE INTO meta(key, value) VALUES('generation', ?)", [.int(Int64(bitPattern: generation))])
        try db.query("INSERT OR REPLACE INTO seals(key, value) VALUES('instance', ?)", [.blob(instance)])
        try db.query("INSERT OR REPLACE INTO seals(key, value) VALUES('rows', ?)", [.blob(rowRoot.bytes)])
        sealedRoot = rowRoot
        try db.query("INSERT OR REPLACE INTO seals(key, value) VALUES('counters', ?)",
                     [.blob(rows.countersTag(generation: generation, nextIno: stored, instance: instance, root: rowRoot))])
    }

    /// A new random instance (import: the copy is another filesystem than its
    /// source, and no longer the snapshot its image was sealed for).
    func renewInstance() throws {
        guard rows.keys != nil else { return }
        let fresh = try SecureRandom.bytes(16)
        try transaction {
            try writeCountersTag(generation: generation, nextIno: writtenNextIno, instance: fresh)
            try db.query("DELETE FROM seals WHERE key = ?", [.text(SnapshotSeal.key)])  // (an imported image's: no snapshot any more)
        }
        instance = fresh
    }

    /// Moves the generation up by one, in its own transaction (schema 2 only).
    func advanceGeneration() throws {
        guard rows.keys != nil else { return }
        let next = generation + 1
        try transaction { try writeCountersTag(generation: next, nextIno: writtenNextIno) }
        generation = next
    }

    // MARK: inodes

    func attributes(_ ino: InodeNumber) throws -> InodeAttributes {
        if let a = cache[ino.rawValue] { return a }
        var found: InodeAttributes?
        try db.query("SELECT \(rows.inodeColumns()) FROM inodes WHERE ino = ?", [.int(Int64(bitPattern: ino.rawValue))]) { found = try rows.decode($0, from: 0) }
        guard let found else { throw MetaStoreError.posix(ENOENT) }
        cache[ino.rawValue] = found
        return found
    }

    /// Creates an inode row: a plain INSERT, so a number already in use (a
    /// counter that was rolled back or edited) fails instead of replacing a file.
    func insert(_ a: InodeAttributes) throws {
        let row = try rows.bindings(a)
        try transaction {
            do {
                try db.query("INSERT INTO inodes(\(rows.inodeColumns())) VALUES(\(rows.inodePlaceholders))", row.values)
            } catch MetaStoreError.database(_, let message) where message.contains("UNIQUE") {
                throw MetaStoreError.untrustedMetadata(path: db.path, problem: "hands out inode number \(a.ino), which is in use")
            }
            try addInodeElement(a.ino, sealed: row.sealed)
        }
        cache[a.ino.rawValue] = a
    }

    /// Writes an inode through to SQLite and the cache.
    func store(_ a: InodeAttributes) throws {
        let row = try rows.bindings(a)
        try transaction {
            try subtractInodeElement(a.ino)
            try db.query("INSERT OR REPLACE INTO inodes(\(rows.inodeColumns())) VALUES(\(rows.inodePlaceholders))", row.values)
            try addInodeElement(a.ino, sealed: row.sealed)
        }
        cache[a.ino.rawValue] = a
        dirty.remove(a.ino.rawValue)
    }

    func flushDirty() throws {
        guard !dirty.isEmpty else { return }
        let pending = dirty
        try transaction {
            for ino in pending { if let a = cache[ino] { try store(a) } }
        }
        dirty.removeAll()
    }

    // MARK: names

    func entryAD(_ parent: InodeNumber) -> [UInt8] { [0x65] + le64(parent.rawValue) }

    func sealName(_ name: [UInt8], parent: InodeNumber) throws -> [UInt8] {
        guard !name.isEmpty, name != [0x2e], name != [0x2e, 0x2e], !name.contains(0x2f) else { throw MetaStoreError.posix(EINVAL) }
        guard name.count <= Self.nameMax else { throw MetaStoreError.posix(ENAMETOOLONG) }
        return try names.seal(name, associatedData: entryAD(parent))
    }

    func openName(_ sealed: [UInt8], parent: InodeNumber) throws -> [UInt8] {
        do { return try names.open(sealed, associatedData: entryAD(parent)) } catch {
            throw MetaStoreError.corruptRecord(what: "directory entry in inode \(parent)")
        }
    }

    /// The inode a name points to in `parent`, or nil; on schema 2 only if the entry's tag verifies.
    func entry(_ parent: InodeNumber, _ sealed: [UInt8]) throws -> InodeNumber? {
        var found: (InodeNumber, [UInt8])?
        try db.query("SELECT \(rows.keys == nil ? "ino" : "ino, tag") FROM entries WHERE parent = ? AND name = ?",
                     [.int(Int64(bitPattern: parent.rawValue)), .blob(sealed)]) { found = (InodeNumber(UInt64(bitPattern: $0.int(0))), rows.keys == nil ? [] : $0.blob(1)) }
        guard let (ino, tag) = found else { return nil }
        try rows.verifyEntry(parent: parent, sealedName: sealed, ino: ino, tag: tag)
        return ino
    }

    /// Adds a name (and on schema 2 its tag, binding it to `ino`).
    func insertEntry(_ parent: InodeNumber, _ sealed: [UInt8], _ ino: InodeNumber, id: Int64? = nil) throws {
        let columns = (id == nil ? "" : "id, ") + rows.entryColumns
        try transaction {
            try db.query("INSERT INTO entries(\(columns)) VALUES(\(columns.split(separator: ",").map { _ in "?" }.joined(separator: ",")))",
                         (id.map { [SQLValue.int($0)] } ?? []) + (try rows.entryBindings(parent: parent, sealedName: sealed, ino: ino)))
            try rows.entryElement(parent: parent, sealedName: sealed, ino: ino).map { rowRoot.add($0) }
        }
    }

    /// Points an existing name at another inode (rename exchange); the entry keeps its id (readdir's order).
    func setEntry(_ parent: InodeNumber, _ sealed: [UInt8], to ino: InodeNumber) throws {
        let key: [SQLValue] = [.int(Int64(bitPattern: parent.rawValue)), .blob(sealed)]
        try transaction {
            guard let old = try entryTarget(parent, sealed) else { throw MetaStoreError.posix(ENOENT) }
            if rows.keys == nil {
                try db.query("UPDATE entries SET ino = ? WHERE parent = ? AND name = ?", [.int(Int64(bitPattern: ino.rawValue))] + key)
            } else {
                try db.query("UPDATE entries SET ino = ?, tag = ? WHERE parent = ? AND name = ?",
                             [.int(Int64(bitPattern: ino.rawValue)), .blob(try rows.entryTag(parent: parent, sealedName: sealed, ino: ino))] + key)
            }
            try rows.entryElement(parent: parent, sealedName: sealed, ino: old).map { rowRoot.subtract($0) }
            try rows.entryElement(parent: parent, sealedName: sealed, ino: ino).map { rowRoot.add($0) }
        }
    }

    /// The inode an entry row names, unverified (for the root's bookkeeping).
    private func entryTarget(_ parent: InodeNumber, _ sealed: [UInt8]) throws -> InodeNumber? {
        var old: InodeNumber?
        try db.query("SELECT ino FROM entries WHERE parent = ? AND name = ?", [.int(Int64(bitPattern: parent.rawValue)), .blob(sealed)]) {
            old = InodeNumber(UInt64(bitPattern: $0.int(0)))
        }
        return old
    }

    /// Removes the name `sealed` from `parent`; false when there was none.
    @discardableResult
    func deleteEntry(_ parent: InodeNumber, _ sealed: [UInt8]) throws -> Bool {
        try transaction {
            guard let old = try entryTarget(parent, sealed) else { return false }
            try db.query("DELETE FROM entries WHERE parent = ? AND name = ?", [.int(Int64(bitPattern: parent.rawValue)), .blob(sealed)])
            try rows.entryElement(parent: parent, sealedName: sealed, ino: old).map { rowRoot.subtract($0) }
            return true
        }
    }

    func directory(_ ino: InodeNumber) throws -> InodeAttributes {
        let a = try attributes(ino)
        guard a.isDirectory else { throw MetaStoreError.posix(ENOTDIR) }
        guard a.nlink > 0 else { throw MetaStoreError.posix(ENOENT) }
        return a
    }

    func lookup(_ parent: InodeNumber, _ name: [UInt8]) throws -> InodeAttributes {
        let dir = try directory(parent)
        if name == [0x2e] { return dir }
        if name == [0x2e, 0x2e] { return try attributes(dir.parent) }
        guard let ino = try entry(parent, sealName(name, parent: parent)) else { throw MetaStoreError.posix(ENOENT) }
        return try attributes(ino)
    }

    /// A directory's times after a change of its entries; a changed link count
    /// is written through, times alone are kept in memory like a write's
    /// (written at the next flush, fsync, eviction or unmount).
    func touchDirectory(_ dir: inout InodeAttributes, nlinkDelta: Int32 = 0, now: Timestamp) throws {
        dir.mtime = now
        dir.ctime = now
        guard nlinkDelta != 0 else {
            cache[dir.ino.rawValue] = dir
            dirty.insert(dir.ino.rawValue)
            return
        }
        try dir.adjustLinks(by: Int64(nlinkDelta))
        try store(dir)
    }

    // MARK: creation

    func makeNode(parent: InodeNumber, name: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, rdev: UInt64, symlinkTarget: [UInt8]?) throws -> InodeAttributes {
        let created: (InodeAttributes, UInt64?) = try transaction {
            var dir = try directory(parent)
            let sealed = try sealName(name, parent: parent)
            guard try entry(parent, sealed) == nil else { throw MetaStoreError.posix(EEXIST) }
            let now = Timestamp.now()
            let isDir = mode & UInt32(S_IFMT) == UInt32(S_IFDIR)
            var mode = mode
            var gid = gid
            if dir.mode & UInt32(S_ISGID) != 0 {
                gid = dir.gid
                if isDir { mode |= UInt32(S_ISGID) }
            }
            guard nextIno < UInt64(InodeAttributes.maxInodeNumber) else { throw MetaStoreError.posix(ENOSPC) }  // no numbers left
            let ino = InodeNumber(nextIno)
            let node = InodeAttributes(ino: ino, mode: mode, nlink: isDir ? 2 : 1, uid: uid, gid: gid, rdev: rdev,
                                       size: UInt64(symlinkTarget?.count ?? 0), atime: now, mtime: now, ctime: now, parent: parent)
            try insert(node)
            var newReserve: UInt64?
            if nextIno >= reservedIno {
                newReserve = nextIno + Self.inodeBatch
                try writeCounters(nextIno: newReserve!)
            }
            try insertEntry(parent, sealed, ino)
            if let target = symlinkTarget {
                guard !target.isEmpty, target.count <= 4095 else { throw MetaStoreError.posix(target.isEmpty ? ENOENT : ENAMETOOLONG) }
                try insertSymlink(ino, sealedTarget: names.seal(target, associatedData: [0x6c] + le64(ino.rawValue)))
            }
            try touchDirectory(&dir, nlinkDelta: isDir ? 1 : 0, now: now)
            nextIno += 1
            return (node, newReserve)
        }
        // Only a committed reservation counts (a rolled-back one is tried again).
        if let newReserve = created.1 { reservedIno = newReserve }
        return created.0
    }

    func link(_ ino: InodeNumber, newParent: InodeNumber, newName: [UInt8]) throws -> InodeAttributes {
        try transaction {
            var node = try attributes(ino)
            guard !node.isDirectory else { throw MetaStoreError.posix(EPERM) }
            guard node.nlink > 0 else { throw MetaStoreError.posix(ENOENT) }
            var dir = try directory(newParent)
            let sealed = try sealName(newName, parent: newParent)
            guard try entry(newParent, sealed) == nil else { throw MetaStoreError.posix(EEXIST) }
            let now = Timestamp.now()
            try insertEntry(newParent, sealed, ino)
            try node.adjustLinks(by: 1)
            node.ctime = now
            try store(node)
            try touchDirectory(&dir, now: now)
            return node
        }
    }

    // MARK: removal

    /// Removes a name; returns the inode with its new link count (0 means unreferenced by names).
    func remove(parent: InodeNumber, name: [UInt8], directory wantDirectory: Bool) throws -> InodeAttributes {
        try transaction {
            var dir = try directory(parent)
            let sealed = try sealName(name, parent: parent)
            guard let ino = try entry(parent, sealed) else { throw MetaStoreError.posix(ENOENT) }
            var node = try attributes(ino)
            let now = Timestamp.now()
            if wantDirectory {
                guard node.isDirectory else { throw MetaStoreError.posix(ENOTDIR) }
                try requireEmpty(ino)
                node.nlink = 0
            } else {
                guard !node.isDirectory else { throw MetaStoreError.posix(EISDIR) }
                try node.adjustLinks(by: -1)
            }
            node.ctime = now
            try deleteEntry(parent, sealed)
            try store(node)
            try touchDirectory(&dir, nlinkDelta: wantDirectory ? -1 : 0, now: now)
            return node
        }
    }

    /// ENOTEMPTY unless the directory has no entries.
    func requireEmpty(_ directory: InodeNumber) throws {
        guard try db.scalar("SELECT 1 FROM entries WHERE parent = ? LIMIT 1", [.int(Int64(directory.rawValue))]) == nil else {
            throw MetaStoreError.posix(ENOTEMPTY)
        }
    }

    /// Deletes an inode that no name and no open handle refers to any more.
    func purge(_ ino: InodeNumber) throws {
        try transaction { try deleteInodeRows(ino) }
        cache[ino.rawValue] = nil
        dirty.remove(ino.rawValue)
    }

    func orphans() throws -> [InodeNumber] {
        var out = [InodeNumber]()
        try db.query("SELECT ino FROM inodes WHERE nlink = 0") { out.append(InodeNumber(UInt64(bitPattern: $0.int(0)))) }
        return out
    }
}

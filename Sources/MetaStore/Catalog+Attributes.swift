import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

extension Catalog {
    func setAttributes(_ ino: InodeNumber, _ changes: AttributeChanges) throws -> InodeAttributes {
        var a = try attributes(ino)
        let now = Timestamp.now()
        if let mode = changes.mode { a.mode = (a.mode & UInt32(S_IFMT)) | (mode & 0o7777) }
        if let uid = changes.uid { a.uid = uid }
        if let gid = changes.gid { a.gid = gid }
        if let size = changes.size { a.size = size }
        if let atime = changes.atime { a.atime = atime }
        if let mtime = changes.mtime { a.mtime = mtime }
        a.ctime = changes.ctime ?? now
        if changes.mode == nil && changes.uid == nil && changes.gid == nil && changes.size == nil {
            // Timestamps only (the kernel's writeback cache sends these at every close):
            // kept in memory like a write's, written at the next flush, fsync or eviction.
            cache[ino.rawValue] = a
            dirty.insert(ino.rawValue)
        } else {
            try store(a)
        }
        return a
    }

    /// Records a write: a grown size is written through at once (before the
    /// data, so a crash never exposes data past the stored size); otherwise
    /// only the timestamps change, in memory, until the next flush.
    func recordWrite(_ ino: InodeNumber, newSize: UInt64?) throws -> InodeAttributes {
        var a = try attributes(ino)
        let now = Timestamp.now()
        a.mtime = now
        a.ctime = now
        if let newSize, newSize != a.size {
            a.size = newSize
            try store(a)
        } else {
            cache[ino.rawValue] = a
            dirty.insert(ino.rawValue)
        }
        return a
    }

    /// Entries after `cookie`: "." is cookie 1, ".." cookie 2, stored entries id + 2.
    func readDirectory(_ ino: InodeNumber, after cookie: Int64, limit: Int) throws -> [DirectoryEntry] {
        let dir = try directory(ino)
        var out = [DirectoryEntry]()
        if cookie < 1 { out.append(DirectoryEntry(name: [0x2e], attributes: dir, cookie: 1)) }
        if cookie < 2 { out.append(DirectoryEntry(name: [0x2e, 0x2e], attributes: try attributes(dir.parent), cookie: 2)) }
        var found = [(Int64, [UInt8], InodeAttributes)]()
        try db.query("""
            SELECT e.id, e.name, \(rows.keys == nil ? "NULL" : "e.tag"), \(rows.inodeColumns("i.")) FROM entries e JOIN inodes i ON i.ino = e.ino
            WHERE e.parent = ? AND e.id > ? ORDER BY e.id LIMIT ?
            """, [.int(Int64(ino.rawValue)), .int(max(0, cookie - 2)), .int(Int64(limit))]) { row in
            // The id is the readdir cookie (id + 2) and is not covered by the name's SIV tag.
            guard (1..<InodeAttributes.maxInodeNumber).contains(row.int(0)) else { throw MetaStoreError.corruptRecord(what: "directory entry \(row.int(0)) in inode \(ino)") }
            let attributes = try rows.decode(row, from: 3)
            try rows.verifyEntry(parent: ino, sealedName: row.blob(1), ino: attributes.ino, tag: row.blob(2))
            found.append((row.int(0), row.blob(1), attributes))
        }
        for (id, sealed, stored) in found {
            let attributes = cache[stored.ino.rawValue] ?? stored
            out.append(DirectoryEntry(name: try openName(sealed, parent: ino), attributes: attributes, cookie: id + 2))
        }
        return out
    }

    func readLink(_ ino: InodeNumber) throws -> [UInt8] {
        guard try attributes(ino).isSymlink else { throw MetaStoreError.posix(EINVAL) }
        var sealed: [UInt8]?
        try db.query("SELECT target FROM symlinks WHERE ino = ?", [.int(Int64(ino.rawValue))]) { sealed = $0.blob(0) }
        guard let sealed else { throw MetaStoreError.corruptRecord(what: "symlink \(ino)") }
        do { return try names.open(sealed, associatedData: [0x6c] + le64(ino.rawValue), what: "symlink") } catch {
            throw MetaStoreError.corruptRecord(what: "symlink \(ino)")
        }
    }

    func inodeCount() throws -> UInt64 {
        UInt64(try db.scalar("SELECT count(*) FROM inodes") ?? 0)
    }
}

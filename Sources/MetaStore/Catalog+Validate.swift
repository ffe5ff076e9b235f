import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// Rows that kmsfs never writes. A database holding any is not repaired but
/// refused (import) or reported as unrepairable (fsck): trusting such a row
/// to "fix" the rest would let whoever wrote it decide the repair.
extension Catalog {
    /// At most this many invalid rows are described; the scan stops there.
    static let invalidRowLimit = 20

    /// Every invalid row, one line each (at most `invalidRowLimit`).
    func invalidRows() throws -> [String] {
        var out: [String] = []
        func add(_ sql: String, _ describe: @escaping (SQLRow) -> String) throws {
            guard out.count < Self.invalidRowLimit else { return }
            try db.query(sql + " LIMIT \(Self.invalidRowLimit)") { row in
                if out.count < Self.invalidRowLimit { out.append(describe(row)) }
            }
        }
        let integrity = rows.keys != nil
        let metaKeys = integrity ? "'schema_version', 'next_ino', 'generation'" : "'schema_version', 'next_ino'"
        try add("SELECT key FROM meta WHERE key NOT IN (\(metaKeys)) OR typeof(value) != 'integer'") { "meta key '\($0.text(0))' is not kmsfs's" }
        if integrity {
            try add("SELECT key FROM seals WHERE key NOT IN ('counters', 'instance', 'rows', '\(SnapshotSeal.key)') OR typeof(value) != 'blob'") { "seal '\($0.text(0))' is not kmsfs's" }
        }
        // SQLite stores any type in any column: each must hold what kmsfs writes.
        let integers = MetadataSchema.inodeColumns.split(separator: ",").map { "typeof(\($0.filter { $0 != " " })) != 'integer'" }
            + (integrity ? ["typeof(sealed) != 'blob'", "typeof(tags_pending) != 'integer'"] : [])
        try add("SELECT ino FROM inodes WHERE " + integers.joined(separator: " OR ")) { "inode \($0.int(0)) has a column of the wrong type" }
        try db.query("SELECT \(rows.inodeColumns()) FROM inodes") { row in
            guard out.count < Self.invalidRowLimit else { return }
            do { _ = try rows.decode(row, from: 0) } catch MetaStoreError.tampered(let what) { out.append("tampered: \(what)") } catch {
                out.append("inode \(row.int(0)) has impossible attribute values")
            }
        }
        if integrity {
            try add("""
                SELECT u.ino FROM inline_units u LEFT JOIN inodes i ON i.ino = u.ino
                WHERE i.ino IS NULL OR (i.mode & \(S_IFMT)) != \(S_IFREG) OR typeof(u.unit) != 'blob' OR length(u.unit) NOT IN (0, \(DataStore.blockSize))
                """) { "inline unit of inode \($0.int(0)) belongs to no regular file or is malformed" }
            try db.query("SELECT id, parent, name, ino, tag FROM entries") { row in
                guard out.count < Self.invalidRowLimit else { return }
                do {
                    try rows.verifyEntry(parent: InodeNumber(UInt64(bitPattern: row.int(1))), sealedName: row.blob(2), ino: InodeNumber(UInt64(bitPattern: row.int(3))), tag: row.blob(4))
                } catch { out.append("tampered: directory entry \(row.int(0)) in inode \(row.int(1)) naming inode \(row.int(3)): its tag does not verify") }
            }
        }
        // A file's parent field is a hint that may name a directory long gone; a linked directory's is its "..".
        try add("""
            SELECT i.ino FROM inodes i LEFT JOIN inodes p ON p.ino = i.parent
            WHERE (i.mode & \(S_IFMT)) = \(S_IFDIR) AND i.nlink > 0 AND (p.ino IS NULL OR (p.mode & \(S_IFMT)) != \(S_IFDIR))
            """) { "directory \($0.int(0)) has a parent that is not a directory" }
        try add("""
            SELECT id FROM entries WHERE typeof(parent) != 'integer' OR typeof(ino) != 'integer' OR typeof(name) != 'blob'
            OR length(name) > \(NameCipher.overhead + Self.nameMax) OR ino = \(InodeNumber.root.rawValue)
            OR id < 1 OR id >= \(InodeAttributes.maxInodeNumber)
            """) { "directory entry \($0.int(0)) is malformed" }
        try add("""
            SELECT s.ino FROM symlinks s LEFT JOIN inodes i ON i.ino = s.ino
            WHERE typeof(s.target) != 'blob' OR length(s.target) > \(NameCipher.overhead + 4095) OR i.ino IS NULL OR (i.mode & \(S_IFMT)) != \(S_IFLNK)
            """) { "symlink target \($0.int(0)) belongs to no symlink or is malformed" }
        try add("""
            SELECT x.ino FROM xattrs x LEFT JOIN inodes i ON i.ino = x.ino
            WHERE typeof(x.name) != 'blob' OR typeof(x.value) != 'blob' OR i.ino IS NULL
            OR length(x.name) > \(NameCipher.overhead + Self.nameMax) OR length(x.value) > \(NameCipher.overhead + Self.xattrValueMax)
            """) { "xattr of inode \($0.int(0)) belongs to no inode or is malformed" }
        // Names, symlink targets and xattrs are AES-SIV: one that does not open was edited or moved.
        try db.query("SELECT ino, target FROM symlinks") { row in
            guard out.count < Self.invalidRowLimit else { return }
            if (try? names.open(row.blob(1), associatedData: [0x6c] + le64(UInt64(bitPattern: row.int(0))), what: "symlink")) == nil {
                out.append("tampered: the symlink target of inode \(row.int(0)) does not authenticate")
            }
        }
        try db.query("SELECT ino, name, value FROM xattrs") { row in
            guard out.count < Self.invalidRowLimit else { return }
            let ino = le64(UInt64(bitPattern: row.int(0)))
            if (try? names.open(row.blob(1), associatedData: [0x78, 0x6e] + ino, what: "xattr name")) == nil
                || (try? names.open(row.blob(2), associatedData: [0x78, 0x76] + ino + row.blob(1), what: "xattr")) == nil {
                out.append("tampered: an xattr of inode \(row.int(0)) does not authenticate")
            }
        }
        return out
    }
}

import BlockCipher
import Locking
#if canImport(Glibc)
import Glibc
#endif

extension MetadataStore {
    /// Writes a schema-2 (integrity) copy of the schema-1 database at
    /// `source` to `target`: every inode row sealed, every entry tagged (entry
    /// ids, the readdir cookies, kept), symlinks and xattrs as they are, the
    /// counters tagged at generation 1. The source must be clean: sealing an
    /// edited or damaged row would vouch for it. `wal: false` for a snapshot's
    /// image, which stays in rollback-journal mode.
    /// `digest` gives each regular file's content digest. Returns the copy's
    /// next inode number and counters' tag (a snapshot image's seal binds them).
    @discardableResult
    public static func writeUpgradedCopy(of source: String, to target: String, names: NameCipher, integrity: IntegrityKeys, wal: Bool,
                                         digest: (InodeAttributes) throws -> [UInt8]) throws -> SnapshotImage {
        // A snapshot's image is frozen: opened read-only, so it stays as it is if the upgrade never commits.
        let old = try MetadataStore(path: source, names: names, create: false, readOnly: !wal)
        let problems = try old.invalidRows()
        guard problems.isEmpty else {
            throw MetaStoreError.untrustedMetadata(path: source, problem: "holds rows kmsfs never writes (\(problems.prefix(3).joined(separator: "; "))): run kmsfs fsck first")
        }
        StoreUpgrade.removeDatabase(target)  // with the WAL of an earlier, interrupted attempt: replayed, it would corrupt this one
        let new = try MetadataStore(path: target, names: names, integrity: integrity, create: true)
        return try old.catalogLock.withLock { from in
            try new.catalogLock.withLock { to in
                let plain = RowCodec(keys: nil)
                try to.transaction {
                    try to.deleteInodeRows(.root)  // the one a new store starts with
                    try from.db.query("SELECT \(plain.inodeColumns()) FROM inodes ORDER BY ino") { row in
                        var a = try plain.decode(row, from: 0)
                        if a.isRegular { a.contentDigest = try digest(a) }
                        try to.insert(a)
                    }
                    try from.db.query("SELECT id, parent, name, ino FROM entries ORDER BY id") { row in
                        let parent = InodeNumber(UInt64(bitPattern: row.int(1))), ino = InodeNumber(UInt64(bitPattern: row.int(3)))
                        try to.insertEntry(parent, row.blob(2), ino, id: row.int(0))
                    }
                    try from.db.query("SELECT ino, target FROM symlinks") { try to.insertSymlink(InodeNumber(UInt64(bitPattern: $0.int(0))), sealedTarget: $0.blob(1)) }
                    try from.db.query("SELECT ino, name, value FROM xattrs") {
                        try to.putXattr(InodeNumber(UInt64(bitPattern: $0.int(0))), sealedName: $0.blob(1), sealedValue: $0.blob(2))
                    }
                    try to.writeCounters(nextIno: from.reservedIno)
                }
                to.cache.removeAll()
                if wal {
                    try to.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                } else {
                    try to.db.execute("PRAGMA journal_mode=DELETE")
                }
                return SnapshotImage(fileIDLimit: to.nextIno, countersTag: try to.countersTagAsStored())
            }
        }
    }
}

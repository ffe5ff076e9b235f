import BlockCipher

/// Binds a snapshot's image to its catalog entry (docs/FORMAT.md "Snapshot
/// seals"; integrity on). The catalog is a plain text file beside the
/// images; without a seal, someone who can write the store could show one
/// genuine snapshot under another's name, move an image under another id,
/// or lower a snapshot's file id limit so that later changes are no longer
/// preserved for it. The image holds, in `seals('snapshot')`,
/// `le64(file id limit) ‖ tag`, where tag is the first 16 bytes of
/// HMAC-SHA-256(metadata MAC key, `0x73 ‖ le32(id) ‖ le64(created) ‖
/// le64(file id limit) ‖ the image's counters tag ‖ name`): the entry's
/// every field, bound to the image's own counters (its generation, instance
/// and row root).
public enum SnapshotSeal {
    static let key = "snapshot"

    static func tag(keys: IntegrityKeys, id: UInt32, name: String, created: UInt64, limit: UInt64, counters: [UInt8]) throws -> [UInt8] {
        try keys.metadata.authenticate([[0x73], le32(id), le64(created), le64(limit), counters, Array(name.utf8)], length: RowCodec.tagByteCount)
    }

    /// Seals the image at `path` (written and closed) for `info`. `counters`
    /// is the counters' tag the copied store held, as its writer computed it
    /// (not read back from the file, which could have been swapped meanwhile).
    public static func write(image path: String, for info: SnapshotInfo, counters: [UInt8], keys: IntegrityKeys) throws {
        let db = try MetadataSchema.open(path, readOnly: false, version: 2)
        let value = le64(info.fileIDLimit) + (try tag(keys: keys, id: info.id, name: info.name, created: info.created, limit: info.fileIDLimit, counters: counters))
        // A rollback-journal database commits with synchronous=FULL; the directory sync makes the journal's removal durable.
        try db.query("INSERT OR REPLACE INTO seals(key, value) VALUES('snapshot', ?)", [.blob(value)])
        try syncDirectory(containing: path)
    }

    /// Checks that the image open in `db` was sealed for snapshot `id` named
    /// `name`, created at `created`, with file id limit `limit` (nil: any,
    /// an import, whose manifest does not name it). Returns the sealed limit.
    @discardableResult
    static func verify(_ db: SQLiteDatabase, id: UInt32, name: String, created: UInt64, limit: UInt64?, keys: IntegrityKeys) throws -> UInt64 {
        var sealed: [UInt8] = []
        try db.query("SELECT value FROM seals WHERE key = 'snapshot'") { sealed = $0.blob(0) }
        var counters: [UInt8] = []
        try db.query("SELECT value FROM seals WHERE key = 'counters'") { counters = $0.blob(0) }
        let what = "snapshot \(name) (id \(id))"
        guard sealed.count == 8 + RowCodec.tagByteCount else { throw MetaStoreError.tampered(what: "\(what): its image has no snapshot seal") }
        let sealedLimit = u64(sealed, 0)
        let expected = try tag(keys: keys, id: id, name: name, created: created, limit: sealedLimit, counters: counters)
        guard MessageAuthenticator.equal(expected, Array(sealed[8...])), limit == nil || limit == sealedLimit else {
            throw MetaStoreError.tampered(what: "\(what): the catalog entry (id, name, creation time, file id limit) is not the one its image was sealed with")
        }
        return sealedLimit
    }

    /// The same for the image at `path`.
    @discardableResult
    public static func verify(image path: String, _ s: SnapshotInfo, keys: IntegrityKeys) throws -> UInt64 {
        try verify(try MetadataSchema.open(path, readOnly: true, version: 2), id: s.id, name: s.name, created: s.created, limit: s.fileIDLimit, keys: keys)
    }
}

extension MetadataStore {
    /// Checks that this store (a snapshot's image, opened and verified) was
    /// sealed for snapshot `id` named `name` created at `created`, with file
    /// id limit `limit` (nil: any). Read through this store's own
    /// connection, so the image checked is the one being served.
    public func verifySnapshotSeal(id: UInt32, name: String, created: UInt64, limit: UInt64?) throws {
        try catalog { c in
            guard let keys = c.rows.keys else { return }
            try SnapshotSeal.verify(c.db, id: id, name: name, created: created, limit: limit, keys: keys)
        }
    }
}

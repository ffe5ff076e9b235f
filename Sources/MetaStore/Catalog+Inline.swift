#if canImport(Glibc)
import Glibc
#endif

/// Small files' data in the metadata (schema 2, docs/FORMAT.md "Inline
/// files"): a file whose data is at most its first unit keeps that unit's
/// ciphertext in `inline_units` instead of a data file, so creating or
/// exporting many small files costs no backing file each.
public enum InlineUnits {
    /// A write that ends at or below this offset may keep a file inline.
    public static let maxSize = DataStore.blockSize
}

/// Where inline files' units live (the metadata store); `DataFile` reads and
/// writes them through it, under the inode's lock.
public protocol InlineUnitStore: Sendable {
    /// The unit of inline file `ino` (empty: a hole) and the content digest its sealed row holds.
    func inlineUnit(_ ino: InodeNumber) throws -> (unit: [UInt8], digest: [UInt8])
    /// Makes `ino` inline with `unit` (empty: a hole) and its content digest, in one transaction;
    /// with `size`, a write: the size becomes it and the times now, in the same transaction.
    func setInlineUnit(_ ino: InodeNumber, unit: [UInt8], digest: [UInt8], size: UInt64?) throws
    /// Ends `ino`'s inline state once its unit is durable in its data file: the content digest becomes pending.
    func endInline(_ ino: InodeNumber) throws
}

extension Catalog {
    func inlineUnit(_ ino: InodeNumber) throws -> (unit: [UInt8], digest: [UInt8]) {
        let a = try attributes(ino)
        guard a.isInline, let digest = a.contentDigest else { throw MetaStoreError.posix(EINVAL) }
        var unit: [UInt8]?
        try db.query("SELECT unit FROM inline_units WHERE ino = ?", [.int(Int64(bitPattern: ino.rawValue))]) { unit = $0.blob(0) }
        guard let unit, unit.isEmpty || unit.count == DataStore.blockSize else {
            throw MetaStoreError.tampered(what: "the inline data of inode \(ino) is missing or malformed")
        }
        return (unit, digest)
    }

    func setInlineUnit(_ ino: InodeNumber, unit: [UInt8], digest: [UInt8], size: UInt64?) throws {
        try transaction {
            var a = try attributes(ino)
            guard a.isRegular, rows.keys != nil else { throw MetaStoreError.posix(EINVAL) }
            if let size {
                let now = Timestamp.now()
                (a.size, a.mtime, a.ctime) = (size, now, now)
            }
            try db.query("INSERT OR REPLACE INTO inline_units(ino, unit) VALUES(?,?)", [.int(Int64(bitPattern: ino.rawValue)), .blob(unit)])
            a.isInline = true
            a.contentDigest = digest
            try store(a)
        }
    }

    func endInline(_ ino: InodeNumber) throws {
        try transaction {
            var a = try attributes(ino)
            try db.query("DELETE FROM inline_units WHERE ino = ?", [.int(Int64(bitPattern: ino.rawValue))])
            a.isInline = false
            a.contentDigest = nil
            // Not forced to disk: a lost commit leaves the file inline, with the same unit.
            try store(a)
        }
    }
}

extension MetadataStore: InlineUnitStore {
    public func inlineUnit(_ ino: InodeNumber) throws -> (unit: [UInt8], digest: [UInt8]) { try catalog { try $0.inlineUnit(ino) } }
    public func setInlineUnit(_ ino: InodeNumber, unit: [UInt8], digest: [UInt8], size: UInt64?) throws {
        try catalog { try $0.setInlineUnit(ino, unit: unit, digest: digest, size: size) }
    }
    public func endInline(_ ino: InodeNumber) throws { try catalog { try $0.endInline(ino) } }
}

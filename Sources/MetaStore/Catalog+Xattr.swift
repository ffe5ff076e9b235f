import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// Extended attributes: names and values are AES-SIV sealed; the value is
/// bound to its sealed name, and framed with a leading 0x01 so an empty value
/// still seals (docs/FORMAT.md "xattrs").
/// setxattr(2) flags (sys/xattr.h).
public enum XattrFlags {
    public static let create: Int32 = 1
    public static let replace: Int32 = 2
}

extension Catalog {
    static let xattrNameMax = 255
    static let xattrValueMax = 65536

    private func sealXattrName(_ ino: InodeNumber, _ name: [UInt8]) throws -> [UInt8] {
        guard !name.isEmpty, name.count <= Self.xattrNameMax else { throw MetaStoreError.posix(ERANGE) }
        return try names.seal(name, associatedData: [0x78, 0x6e] + le64(ino.rawValue))
    }

    func setXattr(_ ino: InodeNumber, name: [UInt8], value: [UInt8], flags: Int32) throws {
        guard value.count <= Self.xattrValueMax else { throw MetaStoreError.posix(E2BIG) }
        try transaction {
            var a = try attributes(ino)
            let sealedName = try sealXattrName(ino, name)
            let exists = try db.scalar("SELECT 1 FROM xattrs WHERE ino = ? AND name = ?", [.int(Int64(ino.rawValue)), .blob(sealedName)]) != nil
            if flags & XattrFlags.create != 0 && exists { throw MetaStoreError.posix(EEXIST) }
            if flags & XattrFlags.replace != 0 && !exists { throw MetaStoreError.posix(ENODATA) }
            let sealedValue = try names.seal([1] + value, associatedData: [0x78, 0x76] + le64(ino.rawValue) + sealedName)
            try putXattr(ino, sealedName: sealedName, sealedValue: sealedValue)
            a.ctime = Timestamp.now()
            try store(a)
        }
    }

    func getXattr(_ ino: InodeNumber, name: [UInt8]) throws -> [UInt8] {
        _ = try attributes(ino)
        // The kernel asks for security.capability before the first write to every
        // file; most files have no xattrs, which this answers without sealing the name.
        guard try db.scalar("SELECT 1 FROM xattrs WHERE ino = ? LIMIT 1", [.int(Int64(ino.rawValue))]) != nil else {
            throw MetaStoreError.posix(ENODATA)
        }
        let sealedName = try sealXattrName(ino, name)
        var sealed: [UInt8]?
        try db.query("SELECT value FROM xattrs WHERE ino = ? AND name = ?", [.int(Int64(ino.rawValue)), .blob(sealedName)]) { sealed = $0.blob(0) }
        guard let sealed else { throw MetaStoreError.posix(ENODATA) }
        guard let framed = try? names.open(sealed, associatedData: [0x78, 0x76] + le64(ino.rawValue) + sealedName, what: "xattr"), framed.first == 1 else {
            throw MetaStoreError.corruptRecord(what: "xattr of inode \(ino)")
        }
        return Array(framed.dropFirst())
    }

    func listXattrs(_ ino: InodeNumber) throws -> [[UInt8]] {
        _ = try attributes(ino)
        var sealedNames = [[UInt8]]()
        try db.query("SELECT name FROM xattrs WHERE ino = ?", [.int(Int64(ino.rawValue))]) { sealedNames.append($0.blob(0)) }
        return try sealedNames.map { sealed in
            guard let name = try? names.open(sealed, associatedData: [0x78, 0x6e] + le64(ino.rawValue), what: "xattr name") else {
                throw MetaStoreError.corruptRecord(what: "xattr name of inode \(ino)")
            }
            return name
        }.sorted { $0.lexicographicallyPrecedes($1) }
    }

    func removeXattr(_ ino: InodeNumber, name: [UInt8]) throws {
        try transaction {
            var a = try attributes(ino)
            let sealedName = try sealXattrName(ino, name)
            guard try deleteXattr(ino, sealedName: sealedName) else { throw MetaStoreError.posix(ENODATA) }
            a.ctime = Timestamp.now()
            try store(a)
        }
    }
}

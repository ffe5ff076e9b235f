import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// How inode rows, directory entries and the store's counters are written:
/// schema 1 keeps attributes in plain columns; schema 2 (integrity) seals
/// them with AES-SIV bound to the inode number and tags entries and counters
/// (docs/FORMAT.md "Metadata store"). Every other part of the catalog is the
/// same for both, so this is the one place that knows the difference.
struct RowCodec: Sendable {
    /// nil: schema 1, nothing authenticated beyond the names.
    let keys: IntegrityKeys?

    var schemaVersion: Int64 { keys == nil ? 1 : 2 }
    static let tagByteCount = 16
    /// Size of a sealed inode's plaintext (layout 1).
    static let sealedPlaintextCount = 104

    /// The inode columns in SELECT and INSERT order, unprefixed and with "i."
    /// (built once: every inode read and write names them).
    private let columns: (plain: String, joined: String)

    init(keys: IntegrityKeys?) {
        self.keys = keys
        func list(_ prefix: String) -> String {
            let plain = MetadataSchema.inodeColumns.split(separator: ",").map { prefix + $0.filter { $0 != " " } }
            return (plain + (keys == nil ? [] : [prefix + "sealed", prefix + "tags_pending"])).joined(separator: ", ")
        }
        columns = (list(""), list("i."))
    }

    /// The inode columns in SELECT and INSERT order; `prefix` "i." for a join.
    func inodeColumns(_ prefix: String = "") -> String {
        switch prefix {
        case "": return columns.plain
        case "i.": return columns.joined
        default: preconditionFailure("inode columns are prefixed with i. only")
        }
    }

    var inodePlaceholders: String { keys == nil ? "?,?,?,?,?,?,?,?,?,?,?" : "?,?,?,?,?,?,?,?,?,?,?,?,?" }

    /// Schema 2's `tags_pending`: a regular file whose content digest is not
    /// current (written since the last clean unmount), so unmount finds the
    /// files to digest without opening every row.
    static func tagsPending(_ a: InodeAttributes) -> Int64 { a.isRegular && a.contentDigest == nil ? 1 : 0 }

    /// Column values for `a`. Schema 2 stores only the tree's shape in the
    /// clear: the type bits, link count, parent, and the size rounded up to
    /// whole units (which the data file's length shows anyway).
    /// `sealed` is the sealed attributes (schema 2; empty on schema 1).
    func bindings(_ a: InodeAttributes) throws -> (values: [SQLValue], sealed: [UInt8]) {
        let ino = SQLValue.int(Int64(bitPattern: a.ino.rawValue))
        guard let keys else {
            return ([ino, .int(Int64(a.mode)), .int(Int64(a.nlink)), .int(Int64(a.uid)), .int(Int64(a.gid)),
                     .int(Int64(bitPattern: a.rdev)), .int(Int64(bitPattern: a.size)), .int(a.atime.packed), .int(a.mtime.packed),
                     .int(a.ctime.packed), .int(Int64(bitPattern: a.parent.rawValue))], [])
        }
        let sealed = try keys.attributes.seal(Self.sealedPlaintext(a), associatedData: Self.inodeAD(a.ino))
        return ([ino, .int(Int64(a.mode & UInt32(S_IFMT))), .int(Int64(a.nlink)), .int(0), .int(0), .int(0),
                 .int(Int64(bitPattern: Self.visibleSize(a.size))), .int(0), .int(0), .int(0),
                 .int(Int64(bitPattern: a.parent.rawValue)), .blob(sealed), .int(Self.tagsPending(a))], sealed)
    }

    /// The size column of schema 2: whole units.
    static func visibleSize(_ size: UInt64) -> UInt64 { (size + 4095) / 4096 * 4096 }

    static func inodeAD(_ ino: InodeNumber) -> [UInt8] { [0x69, 0x6e] + le64(ino.rawValue) }

    static func sealedPlaintext(_ a: InodeAttributes) -> [UInt8] {
        let digest = a.isRegular ? a.contentDigest : nil
        let flags: UInt8 = (digest == nil ? 0 : 1) | (a.isRegular && a.isInline ? 2 : 0)
        var p: [UInt8] = [1, flags, 0, 0]  // layout 1, flags (bit 0: content digest, bit 1: inline), reserved
        p += le32(a.mode) + le32(a.nlink) + le32(a.uid) + le32(a.gid) + le32(0)
        p += le64(a.rdev) + le64(a.size) + le64(UInt64(bitPattern: a.atime.packed)) + le64(UInt64(bitPattern: a.mtime.packed))
        p += le64(UInt64(bitPattern: a.ctime.packed)) + le64(a.parent.rawValue)
        p += digest ?? [UInt8](repeating: 0, count: 32)
        return p
    }

    /// Decodes an inode row, refusing any value kmsfs never writes: a hostile
    /// row (size -1, a mode with unknown type bits, a sealed row that does not
    /// authenticate or disagrees with its visible columns) is an EIO for that
    /// inode, never a trap further on.
    func decode(_ row: SQLRow, from c: Int32) throws -> InodeAttributes {
        let ino = row.int(c)
        guard let keys else {
            return try Self.validated(ino: ino, mode: row.int(c + 1), nlink: row.int(c + 2), uid: row.int(c + 3), gid: row.int(c + 4),
                                      rdev: row.int(c + 5), size: row.int(c + 6), times: (row.int(c + 7), row.int(c + 8), row.int(c + 9)), parent: row.int(c + 10))
        }
        guard (1..<InodeAttributes.maxInodeNumber).contains(ino) else { throw MetaStoreError.corruptRecord(what: "inode \(ino) (impossible inode number)") }
        let p: [UInt8]
        do { p = try keys.attributes.open(row.blob(c + 11), associatedData: Self.inodeAD(InodeNumber(UInt64(ino))), what: "inode") } catch {
            throw MetaStoreError.tampered(what: "inode \(ino): its sealed attributes do not authenticate")
        }
        // Flags: bit 0 a digest at 72 (else zeros there), bit 1 inline (which needs the digest).
        guard p.count == Self.sealedPlaintextCount, p[0] == 1, p[1] <= 3, p[1] != 2, p[2] == 0, p[3] == 0, u32(p, 20) == 0,
              p[1] & 1 == 1 || p[72...].allSatisfy({ $0 == 0 }) else {
            throw MetaStoreError.tampered(what: "inode \(ino): its sealed attributes have an unknown layout")
        }
        func i64(_ o: Int) -> Int64 { Int64(bitPattern: u64(p, o)) }
        var a = try Self.validated(ino: ino, mode: Int64(u32(p, 4)), nlink: Int64(u32(p, 8)), uid: Int64(u32(p, 12)), gid: Int64(u32(p, 16)),
                                   rdev: i64(24), size: i64(32), times: (i64(40), i64(48), i64(56)), parent: i64(64))
        guard row.int(c + 1) == Int64(a.mode & UInt32(S_IFMT)), row.int(c + 2) == Int64(a.nlink), row.int(c + 10) == Int64(bitPattern: a.parent.rawValue),
              row.int(c + 6) == Int64(bitPattern: Self.visibleSize(a.size)),
              [3, 4, 5, 7, 8, 9].allSatisfy({ row.int(c + Int32($0)) == 0 }), p[1] == 0 || a.isRegular
        else { throw MetaStoreError.tampered(what: "inode \(ino): its visible columns disagree with its sealed attributes") }
        if p[1] & 1 == 1 { a.contentDigest = Array(p[72..<104]) }
        a.isInline = p[1] & 2 != 0
        guard row.int(c + 12) == Self.tagsPending(a) else {
            throw MetaStoreError.tampered(what: "inode \(ino): its visible columns disagree with its sealed attributes")
        }
        return a
    }

    private static func validated(ino: Int64, mode: Int64, nlink: Int64, uid: Int64, gid: Int64, rdev: Int64, size: Int64,
                                  times: (Int64, Int64, Int64), parent: Int64) throws -> InodeAttributes {
        guard (1..<InodeAttributes.maxInodeNumber).contains(ino), (1..<InodeAttributes.maxInodeNumber).contains(parent), (0...0o177777).contains(mode),
              InodeAttributes.validTypes.contains(UInt32(mode) & UInt32(S_IFMT)),
              (0...Int64(UInt32.max)).contains(nlink), (0...Int64(UInt32.max)).contains(uid), (0...Int64(UInt32.max)).contains(gid),
              rdev >= 0, size >= 0
        else { throw MetaStoreError.corruptRecord(what: "inode \(ino) (impossible attribute values)") }
        return InodeAttributes(ino: InodeNumber(UInt64(ino)), mode: UInt32(mode), nlink: UInt32(nlink), uid: UInt32(uid), gid: UInt32(gid),
                               rdev: UInt64(rdev), size: UInt64(size), atime: Timestamp(packed: times.0),
                               mtime: Timestamp(packed: times.1), ctime: Timestamp(packed: times.2), parent: InodeNumber(UInt64(parent)))
    }

    // MARK: entries and counters

    /// The entry columns in SELECT and INSERT order.
    var entryColumns: String { keys == nil ? "parent, name, ino" : "parent, name, ino, tag" }

    /// The values of an entry row: its tag binds the name (already bound to
    /// its parent by AES-SIV) to the inode it names, so swapping two entries'
    /// inodes is detected.
    func entryBindings(parent: InodeNumber, sealedName: [UInt8], ino: InodeNumber) throws -> [SQLValue] {
        let base: [SQLValue] = [.int(Int64(bitPattern: parent.rawValue)), .blob(sealedName), .int(Int64(bitPattern: ino.rawValue))]
        guard keys != nil else { return base }
        return base + [.blob(try entryTag(parent: parent, sealedName: sealedName, ino: ino))]
    }

    func entryTag(parent: InodeNumber, sealedName: [UInt8], ino: InodeNumber) throws -> [UInt8] {
        guard let keys else { return [] }
        return try keys.metadata.authenticate([[0x65], le64(parent.rawValue), le64(ino.rawValue), sealedName], length: Self.tagByteCount)
    }

    /// Throws `.tampered` unless `tag` is the entry's (always passes on schema 1).
    func verifyEntry(parent: InodeNumber, sealedName: [UInt8], ino: InodeNumber, tag: [UInt8]) throws {
        guard keys != nil else { return }
        guard MessageAuthenticator.equal(try entryTag(parent: parent, sealedName: sealedName, ino: ino), tag) else {
            throw MetaStoreError.tampered(what: "directory entry in inode \(parent) naming inode \(ino): its tag does not verify")
        }
    }

    /// The tag over the stored counters (schema 2): the generation, the next
    /// inode number, the instance (16 random bytes, new at create, upgrade
    /// and import, so an imported twin with the same UUID and keys is told
    /// apart) and the row root cannot be edited or taken from another store,
    /// and the root of an older state does not go with a newer generation.
    func countersTag(generation: UInt64, nextIno: UInt64, instance: [UInt8], root: RowRoot) throws -> [UInt8] {
        guard let keys else { return [] }
        return try keys.metadata.authenticate([[0x63], le64(UInt64(schemaVersion)), le64(generation), le64(nextIno), instance, root.bytes],
                                              length: Self.tagByteCount)
    }
}

import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// An inode number. Inode numbers are never reused and double as the file id
/// in the XTS tweak (docs/FORMAT.md "Data units").
public struct InodeNumber: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    /// The root directory.
    public static let root = InodeNumber(1)
    public static func < (a: InodeNumber, b: InodeNumber) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
    /// The file id used in the XTS tweak for this inode's data.
    public var fileID: FileID { FileID(rawValue) }
}

/// A point in time with nanoseconds.
public struct Timestamp: Sendable, Equatable, Comparable {
    public var seconds: Int64
    public var nanoseconds: Int64

    public init(seconds: Int64, nanoseconds: Int64) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Nanoseconds since the epoch, the stored form.
    init(packed: Int64) {
        seconds = packed >= 0 ? packed / 1_000_000_000 : (packed + 1) / 1_000_000_000 - 1
        nanoseconds = packed &- seconds &* 1_000_000_000  // wrapping: a hostile record must not trap
    }

    var packed: Int64 { seconds &* 1_000_000_000 &+ nanoseconds }

    /// The current wall-clock time (CLOCK_REALTIME).
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.packed < b.packed }
}

/// An inode's attributes as stat(2) reports them.
public struct InodeAttributes: Sendable, Equatable {
    public var ino: InodeNumber
    /// File type and permission bits (S_IFMT | 07777).
    public var mode: UInt32
    public var nlink: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var rdev: UInt64
    public var size: UInt64
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp
    /// For directories, the parent directory (for ".." and rename loop checks).
    public var parent: InodeNumber
    /// Integrity on, regular files: the file's content digest (see
    /// `ContentDigester`) as of the last clean unmount or snapshot, or nil
    /// while its tags are changing (docs/FORMAT.md "Content digests").
    /// Restoring an older tag file, or emptying a record, no longer matches
    /// it; in a snapshot's image it is what the view and an import check.
    public var contentDigest: [UInt8]? = nil
    /// Integrity on, regular files of at most 4096 bytes: the file's one unit
    /// of ciphertext is kept in the metadata (`inline_units`), not in a data
    /// file (docs/FORMAT.md "Inline files"); its content digest is always current.
    public var isInline = false

    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    public var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    public var isSymlink: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }
    /// 512-byte blocks, as st_blocks counts them (data units in use, rounded up).
    public var blocks512: UInt64 { (size + 4095) / 4096 * 8 }

    /// The most links an inode may have (EMLINK above).
    static let maxLinks = Int64(UInt32.max) - 1

    /// Changes the link count by `delta`. A count that would go below zero is
    /// a damaged or edited row (EIO), never a trap; above `maxLinks`, EMLINK.
    mutating func adjustLinks(by delta: Int64) throws {
        let n = Int64(nlink) + delta
        guard n >= 0 else { throw MetaStoreError.corruptRecord(what: "inode \(ino) (link count below zero)") }
        guard n <= Self.maxLinks else { throw MetaStoreError.posix(EMLINK) }
        nlink = UInt32(n)
    }

    /// Inode numbers (and so file ids and next_ino) stay below 2^62: far above
    /// any count a filesystem reaches, and room for import's 2^40 jumps and
    /// the creation batch without overflowing the stored Int64.
    static let maxInodeNumber: Int64 = 1 << 62

    /// The file types an inode may have (S_IFMT values).
    static let validTypes: Set<UInt32> = [S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK].map { UInt32($0) }.reduce(into: []) { $0.insert($1) }
}

/// Which attributes a setattr changes.
public struct AttributeChanges: Sendable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: Timestamp?
    public var mtime: Timestamp?
    /// Set ctime explicitly (otherwise any change sets it to now).
    public var ctime: Timestamp?

    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
                atime: Timestamp? = nil, mtime: Timestamp? = nil, ctime: Timestamp? = nil) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
    }
}

/// One directory entry as readdir returns it.
public struct DirectoryEntry: Sendable {
    public var name: [UInt8]
    public var attributes: InodeAttributes
    /// Opaque cookie: pass it back to continue after this entry.
    public var cookie: Int64
}

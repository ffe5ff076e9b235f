#if canImport(Glibc)
import Glibc
#endif

/// Errors of the MetaStore module: filesystem-semantics errors carry an errno
/// (the FUSE edge replies with it), format and I/O errors carry the path or record.
public enum MetaStoreError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A POSIX error from filesystem semantics (ENOENT, EEXIST, ENOTEMPTY...).
    case posix(Int32)
    /// The superblock is damaged or of an unknown format.
    case superblock(path: String, problem: SuperblockProblem)
    /// SQLite failed.
    case database(operation: String, message: String)
    /// A syscall on the backing store failed.
    case io(operation: String, path: String, errno: Int32)
    /// A metadata record failed authentication or decoding.
    case corruptRecord(what: String)
    /// An authenticated record or data unit that does not verify (integrity
    /// on): the store was edited or damaged; its contents are never returned.
    case tampered(what: String)
    /// The metadata's rows do not sum to their sealed root (integrity on): a
    /// row was put back from an older copy, replaced, added or removed.
    case rowsReplaced
    /// A metadata database that is not as kmsfs writes it (extra schema
    /// objects, an inode counter below its inodes, an impossible row): edited
    /// or damaged, and never used as it is.
    case untrustedMetadata(path: String, problem: String)
    /// A group commit failed (docs/FORMAT.md "Metadata durability"): the
    /// operations it held are lost, as in a crash, and the mount serves no more.
    case commitFailed(operations: Int, reason: String)
    /// No store at this path.
    case storeNotFound(path: String)
    /// A store already exists at this path.
    case storeExists(path: String)

    /// What is wrong with a superblock; each problem is its own documented error.
    public enum SuperblockProblem: Error, Equatable, Sendable, CustomStringConvertible {
        case missing
        case truncated(bytes: Int)
        case badMagic
        case checksumMismatch
        case unsupportedVersion(major: UInt16)
        case unknownIncompatFeatures(mask: UInt32)
        case reservedNotZero(offset: Int)
        case fieldOutOfRange(field: String)

        public var description: String {
            switch self {
            case .missing: return "is missing"
            case .truncated(let n): return "is truncated (\(n) bytes)"
            case .badMagic: return "has a bad magic number (not a kmsfs store)"
            case .checksumMismatch: return "checksum mismatch (corrupt or torn write) in both copies"
            case .unsupportedVersion(let v): return "has format major version \(v), which this kmsfs does not support"
            case .unknownIncompatFeatures(let m): return "uses unknown incompatible features 0x\(String(m, radix: 16))"
            case .reservedNotZero(let o): return "has non-zero reserved bytes at offset \(o)"
            case .fieldOutOfRange(let f): return "has an out-of-range \(f) field"
            }
        }
    }

    /// The errno to give a FUSE caller.
    public var errnoValue: Int32 {
        switch self {
        case .posix(let e): return e
        case .io(_, _, let e): return e == ENOSPC || e == EDQUOT ? e : EIO
        default: return EIO
        }
    }

    public var description: String {
        switch self {
        case .posix(let e): return String(cString: strerror(e))
        case .superblock(let path, let problem): return "superblock \(path) \(problem)"
        case .database(let op, let msg): return "metadata database \(op) failed: \(msg)"
        case .io(let op, let path, let e): return "\(op) \(path) failed: \(String(cString: strerror(e)))"
        case .corruptRecord(let what): return "metadata record \(what) failed authentication (corrupt store or wrong key)"
        case .tampered(let what): return "\(what): the store was tampered with or damaged"
        case .rowsReplaced:
            return "the metadata's rows are not the ones its counters sealed (a row was put back from an older copy, replaced, added or removed): the store was tampered with or damaged"
        case .untrustedMetadata(let path, let problem): return "metadata database \(path) \(problem): it was edited or is damaged"
        case .commitFailed(let n, let reason):
            return "committing the metadata of the last \(n) operation(s) failed (\(reason)); they are lost as in a crash, and this mount serves no more requests: unmount it and mount again"
        case .storeNotFound(let path): return "no kmsfs store at \(path)"
        case .storeExists(let path): return "a kmsfs store already exists at \(path)"
        }
    }
}

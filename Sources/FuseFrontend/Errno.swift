import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// A POSIX error number, the only thing a FUSE reply can carry.
public struct Errno: Error, Equatable, Sendable, CustomStringConvertible {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
    public var description: String { String(cString: strerror(code)) }

    static let notSupported = Errno(EOPNOTSUPP)
    static let noEntry = Errno(ENOENT)
    static let io = Errno(EIO)
    static let invalid = Errno(EINVAL)
    static let badFile = Errno(EBADF)

    /// Maps any error from below to an errno; unexpected ones become EIO with one log line.
    static func from(_ error: any Error, _ context: @autoclosure () -> String) -> Errno {
        switch error {
        case let e as Errno: return e
        case let e as MetaStoreError:
            if case .posix(let code) = e { return Errno(code) }
            // A full store is the caller's condition to handle, not a fault to log.
            if e.errnoValue == ENOSPC || e.errnoValue == EDQUOT { return Errno(e.errnoValue) }
            FuseLog.error("\(context()): \(e)")
            return Errno(e.errnoValue)
        default:
            FuseLog.error("\(context()): \(error)")
            return .io
        }
    }
}

/// One-line diagnostics to stderr (the daemon's log). Never given key bytes or names.
enum FuseLog {
    static func error(_ message: String) {
        let line = Array("kmsfs: \(message)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}

import Foundation
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// A private directory for temporary files: mkdtemp under $TMPDIR (mode
/// 0700, an unpredictable name), removed with its contents when released.
/// A fixed or pid-based name in a shared /tmp can be planted as a symlink
/// by another user; nobody else can create anything in here.
final class ScratchDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "kmsfs-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BundleError.io("cannot create a temporary directory in \(NSTemporaryDirectory()): \(String(cString: strerror(errno)))")
        }
        path = String(cString: made)
    }

    deinit { try? removeTree(path) }

    /// A path for a new file in the directory; `name` is one component kmsfs chose.
    func file(_ name: String) -> String { path + "/" + name }
}

/// Opens a new file for writing, never an existing one and never through a
/// symlink (O_EXCL|O_NOFOLLOW), mode 0600.
func createExclusive(_ path: String) throws -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw BundleError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
    return fd
}

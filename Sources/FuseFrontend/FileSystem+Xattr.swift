import MetaStore
#if canImport(Glibc)
import Glibc
#endif

extension FileSystem {
    /// Namespaces we store; system.* (POSIX ACLs) is not supported.
    static func checkXattrName(_ name: [UInt8]) throws {
        for prefix in ["user.", "trusted.", "security."] where name.starts(with: Array(prefix.utf8)) { return }
        throw Errno.notSupported
    }

    public func setXattr(_ ino: InodeNumber, name: [UInt8], value: [UInt8], flags: Int32) throws {
        try checkWritable()
        try Self.checkXattrName(name)
        try run("setxattr \(ino)") { try metadata.setXattr(ino, name: name, value: value, flags: flags) }
    }

    public func getXattr(_ ino: InodeNumber, name: [UInt8]) throws -> [UInt8] {
        guard name.starts(with: Array("user.".utf8)) || name.starts(with: Array("trusted.".utf8)) || name.starts(with: Array("security.".utf8)) else {
            throw Errno(ENODATA)
        }
        return try run("getxattr \(ino)") { try metadata.getXattr(ino, name: name) }
    }

    /// The NUL-separated name list listxattr(2) returns.
    public func listXattrs(_ ino: InodeNumber) throws -> [UInt8] {
        try run("listxattr \(ino)") { try metadata.listXattrs(ino).flatMap { $0 + [0] } }
    }

    public func removeXattr(_ ino: InodeNumber, name: [UInt8]) throws {
        try checkWritable()
        try Self.checkXattrName(name)
        try run("removexattr \(ino)") { try metadata.removeXattr(ino, name: name) }
    }
}

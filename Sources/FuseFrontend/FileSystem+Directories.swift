import MetaStore
#if canImport(Glibc)
import Glibc
#endif

extension FileSystem {
    public func lookup(parent: InodeNumber, name: [UInt8]) throws -> InodeAttributes {
        let a = try run("lookup in \(parent)") { try metadata.lookup(parent: parent, name: name) }
        table.remember(a.ino)
        return a
    }

    /// The kernel dropped `count` references; an unlinked inode may now go.
    public func forget(_ ino: InodeNumber, count: UInt64) {
        guard ino != .root, table.forget(ino, count: count) else { return }
        if let a = try? metadata.attributes(ino), a.nlink == 0 {
            purgeIfUnreferenced(a)
        } else {
            metadata.evict(ino)
        }
    }

    /// mknod, mkdir and symlink.
    public func makeNode(parent: InodeNumber, name: [UInt8], mode: UInt32, rdev: UInt64, caller: Caller, symlinkTarget: [UInt8]? = nil) throws -> InodeAttributes {
        try checkWritable()
        let type = mode & UInt32(S_IFMT)
        guard [S_IFREG, S_IFDIR, S_IFIFO, S_IFLNK, S_IFSOCK, S_IFCHR, S_IFBLK].map({ UInt32($0) }).contains(type) else { throw Errno.invalid }
        let a = try run("create in \(parent)") {
            try metadata.makeNode(parent: parent, name: name, mode: mode, uid: caller.uid, gid: caller.gid, rdev: rdev, symlinkTarget: symlinkTarget)
        }
        table.remember(a.ino)
        return a
    }

    public func link(_ ino: InodeNumber, newParent: InodeNumber, newName: [UInt8]) throws -> InodeAttributes {
        try checkWritable()
        let a = try run("link \(ino)") { try metadata.link(ino, newParent: newParent, newName: newName) }
        table.remember(a.ino)
        return a
    }

    public func unlink(parent: InodeNumber, name: [UInt8], directory: Bool) throws {
        try checkWritable()
        let node = try run("unlink in \(parent)") { try metadata.remove(parent: parent, name: name, directory: directory) }
        purgeIfUnreferenced(node)
    }

    public func rename(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], flags: UInt32) throws {
        try checkWritable()
        let replaced = try run("rename in \(parent)") {
            try metadata.rename(parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        }
        if let replaced { purgeIfUnreferenced(replaced) }
    }

    public func readLink(_ ino: InodeNumber) throws -> [UInt8] {
        try run("readlink \(ino)") { try metadata.readLink(ino) }
    }

    /// Directory entries after `cookie`, at most `limit`.
    public func readDirectory(_ ino: InodeNumber, after cookie: Int64, limit: Int) throws -> [DirectoryEntry] {
        try run("readdir \(ino)") { try metadata.readDirectory(ino, after: cookie, limit: limit) }
    }

    /// Counts a lookup the kernel takes through readdirplus.
    func rememberFromReaddirPlus(_ ino: InodeNumber) { table.remember(ino) }
}

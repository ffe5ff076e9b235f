import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

extension FileSystem {
    public func attributes(_ ino: InodeNumber) throws -> InodeAttributes {
        try run("getattr \(ino)") { try metadata.attributes(ino) }
    }

    /// setattr: chmod, chown, truncate (up and down) and utimens.
    public func setAttributes(_ ino: InodeNumber, _ changes: AttributeChanges) throws -> InodeAttributes {
        try checkWritable()
        guard let newSize = changes.size else {
            return try run("setattr \(ino)") { try metadata.setAttributes(ino, changes) }
        }
        return try run("truncate \(ino)") {
            let current = try metadata.attributes(ino)
            guard !current.isDirectory else { throw Errno(EISDIR) }
            guard current.isRegular else { throw Errno.invalid }
            let inode = try openData(ino)
            defer { if table.release(ino) { purgeIfUnreferenced(current) } }
            return try gate.pass { try inode.lock.writing {
                let old = try metadata.attributes(ino).size
                var changes = changes
                if changes.mtime == nil && newSize != old { changes.mtime = Timestamp.now() }
                // Shrink the data before the recorded size, grow the size
                // before anything can be written past it (crash ordering).
                guard newSize < old else { return try metadata.setAttributes(ino, changes) }
                try metadata.markTagsPending(ino)
                try inode.data.truncate(from: old, to: newSize)
                let a = try metadata.setAttributes(ino, changes)
                try metadata.commitPending()  // the cut data and the new size land together (group commit)
                return a
            } }
        }
    }

    /// statvfs of the store's backing filesystem, in 4096-byte units.
    public func statistics() throws -> statvfs {
        var st = statvfs()
        guard statvfs(storeRoot, &st) == 0 else { throw Errno(errno) }
        let used = (try? metadata.inodeCount()) ?? 0
        st.f_namemax = 255
        st.f_files = max(st.f_files, UInt(used))
        return st
    }
}

import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

extension FileSystem {
    /// Reads plaintext and hands it to `reply` while the data lock is held.
    public func read(_ ino: InodeNumber, offset: UInt64, count: Int, reply: (UnsafeRawBufferPointer) -> Void) throws {
        let inode = try openInode(ino)
        try run("read inode \(ino) at \(offset)") {
            try inode.lock.reading {
                let size = try metadata.attributes(ino).size
                try inode.data.read(offset: offset, count: count, fileSize: size) { buffer in
                    activity.countRead(buffer.count)
                    reply(buffer)
                }
            }
        }
    }

    /// Writes plaintext; `append` puts it at the current end (O_APPEND).
    public func write(_ ino: InodeNumber, offset: UInt64, data: UnsafeRawBufferPointer, append: Bool) throws -> Int {
        try checkWritable()
        let inode = try openInode(ino)
        return try run("write inode \(ino) at \(offset)") {
            try gate.pass { try inode.lock.writing {
                let old = try metadata.attributes(ino).size
                let start = append ? old : offset
                let end = start + UInt64(data.count)
                guard end <= UInt64(Int64.max) else { throw Errno(EFBIG) }
                if inode.data.writesInline(end: end) {  // unit, size and times in one transaction
                    try inode.data.write(offset: start, data: data, fileSize: old, resultingSize: max(old, end))
                    activity.countWrite(data.count)
                    return data.count
                }
                // Size first: a crash between the two leaves zeros, never stale data.
                let grows = end > old
                try metadata.markTagsPending(ino)
                if grows { _ = try metadata.recordWrite(ino, newSize: end) }
                do {
                    try inode.data.write(offset: start, data: data, fileSize: old)
                } catch {
                    if grows { _ = try? metadata.setAttributes(ino, AttributeChanges(size: old)) }
                    throw error
                }
                if !grows { _ = try metadata.recordWrite(ino, newSize: nil) }
                activity.countWrite(data.count)
                return data.count
            } }
        }
    }

    /// fallocate(2): mode 0 (allocate, may extend), KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE.
    public func allocate(_ ino: InodeNumber, mode: Int32, offset: UInt64, length: UInt64) throws {
        try checkWritable()
        let keepSize: Int32 = 0x01, punchHole: Int32 = 0x02, zeroRange: Int32 = 0x10
        guard mode & ~(keepSize | punchHole | zeroRange) == 0 else { throw Errno.notSupported }
        if mode & punchHole != 0 && mode & keepSize == 0 { throw Errno.notSupported }
        let inode = try openInode(ino)
        try run("fallocate inode \(ino)") {
            try gate.pass { try inode.lock.writing {
                let size = try metadata.attributes(ino).size
                let end = offset + length
                if mode & (punchHole | zeroRange) != 0 {
                    try metadata.markTagsPending(ino)
                    try inode.data.zero(offset: offset, length: length, fileSize: size)
                } else {
                    try inode.data.preallocate(offset: offset, length: length)
                }
                if mode & keepSize == 0 && end > size {
                    _ = try metadata.recordWrite(ino, newSize: end)
                } else if mode & (punchHole | zeroRange) != 0 {
                    _ = try metadata.recordWrite(ino, newSize: nil)
                }
            } }
        }
    }
}

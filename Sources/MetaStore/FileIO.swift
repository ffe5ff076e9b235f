#if canImport(Glibc)
import Glibc
#endif

// The pread/pwrite loops of every store and bundle file (EINTR, short transfers).

/// pread until `buffer` is full or EOF; the rest is zero-filled. Returns the bytes read.
@discardableResult
public func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String) throws -> Int {
    var got = 0
    while got < buffer.count {
        let n = pread(fd, buffer.baseAddress! + got, buffer.count - got, off_t(offset) + off_t(got))
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw MetaStoreError.io(operation: "read", path: path, errno: errno) }
        if n == 0 { break }
        got += n
    }
    if got < buffer.count { (buffer.baseAddress! + got).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - got) }
    return got
}

/// pwrite all of `bytes` at `offset`.
public func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt64, path: String) throws {
    var done = 0
    while done < bytes.count {
        let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw MetaStoreError.io(operation: "write", path: path, errno: n < 0 ? errno : EIO) }
        done += n
    }
}

/// Size in bytes of an open file.
public func fileSize(_ fd: Int32) -> UInt64 {
    var st = stat()
    return fstat(fd, &st) == 0 ? UInt64(st.st_size) : 0
}

/// Size in bytes of the file at `path` (0 if it cannot be read).
public func fileSize(atPath path: String) -> UInt64 {
    var st = stat()
    return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
}

import Locking

/// Buffers for the whole data units of one request, kept and reused: a
/// FUSE request is at most 1 MiB, and with 4 MiB of kernel readahead up to
/// 16 of them run at once. Fresh allocations of that size either fault in
/// zeroed pages for every request (mmap) or, from the heap, fragment the
/// allocator's arenas until the daemon holds hundreds of MiB; a small
/// shared pool of fixed-size buffers holds about 1 MiB per busy thread.
enum UnitBuffers {
    /// Bytes of a pooled buffer: 1 MiB and a partial unit at either end.
    static let capacity = (1 << 20) + 2 * DataStore.blockSize
    /// Buffers kept when idle (more are allocated under load and freed after).
    static let kept = 16
    private static let idle = Locked<[UnsafeMutableRawBufferPointer]>([])

    /// Runs `body` with a unit-aligned buffer of `byteCount` bytes (not
    /// zeroed: callers fill what they use, as with any allocation).
    static func with<R>(byteCount: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        guard byteCount <= capacity else {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount, alignment: DataStore.blockSize)
            defer { buffer.deallocate() }
            return try body(buffer)
        }
        let buffer = idle.withLock { $0.popLast() } ?? .allocate(byteCount: capacity, alignment: DataStore.blockSize)
        defer {
            let kept = idle.withLock { pool -> Bool in
                guard pool.count < Self.kept else { return false }
                pool.append(buffer)
                return true
            }
            if !kept { buffer.deallocate() }
        }
        return try body(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<byteCount]))
    }
}

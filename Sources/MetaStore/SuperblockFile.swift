#if canImport(Glibc)
import Glibc
#endif

/// Reads and writes the two superblock copies of a store (docs/FORMAT.md).
/// A write goes to slot `generation % 2` and is fsync'ed, so a torn write
/// leaves the other copy intact; a read takes the valid copy with the highest generation.
public enum SuperblockFile {
    /// Reads the newest valid copy at `path`.
    public static func read(_ path: String) throws -> Superblock {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw errno == ENOENT ? MetaStoreError.superblock(path: path, problem: .missing) : MetaStoreError.io(operation: "open", path: path, errno: errno)
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: SuperblockLayout.slotSize * SuperblockLayout.slotCount + 1)
        let count = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw MetaStoreError.io(operation: "read", path: path, errno: errno) }
        bytes.removeLast(bytes.count - count)
        var best: Superblock?
        var firstProblem: MetaStoreError.SuperblockProblem?
        for slot in 0..<SuperblockLayout.slotCount {
            let start = slot * SuperblockLayout.slotSize
            let slice = start < bytes.count ? Array(bytes[start..<min(bytes.count, start + SuperblockLayout.slotSize)]) : []
            do {
                let sb = try Superblock.decodeSlot(slice)
                if best == nil || sb.generation > best!.generation { best = sb }
            } catch {
                if firstProblem == nil { firstProblem = error }
            }
        }
        if let best { return best }
        throw MetaStoreError.superblock(path: path, problem: firstProblem ?? .missing)
    }

    /// Writes `superblock` with the next generation into the older slot; returns what was written.
    @discardableResult
    public static func write(_ superblock: Superblock, to path: String) throws -> Superblock {
        var next = superblock
        next.generation = superblock.generation + 1
        let slot = Int(next.generation % UInt64(SuperblockLayout.slotCount))
        let bytes: [UInt8]
        do { bytes = try next.encodeSlot() } catch MetaStoreError.superblock(_, let problem) {
            throw MetaStoreError.superblock(path: path, problem: problem)
        }
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        try bytes.withUnsafeBytes { try writeFully(fd, $0, at: UInt64(slot * SuperblockLayout.slotSize), path: path) }
        guard fsync(fd) == 0 else { throw MetaStoreError.io(operation: "fsync", path: path, errno: errno) }
        return next
    }

    /// Writes `superblock` into both slots (two generations), so the older slot
    /// keeps nothing of what it replaces: used when the wrapped key changes, where
    /// a stale copy would keep the key recoverable the old way.
    @discardableResult
    public static func replace(_ superblock: Superblock, at path: String) throws -> Superblock {
        try write(write(superblock, to: path), to: path)
    }

    /// Creates a new superblock file atomically (temp file, fsync, rename), both slots filled.
    public static func create(_ superblock: Superblock, at path: String) throws {
        let temp = path + ".new"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "create", path: temp, errno: errno) }
        var first = superblock
        first.generation = 0
        var second = superblock
        second.generation = 1
        do {
            defer { close(fd) }
            try first.encodeSlot().withUnsafeBytes { try writeFully(fd, $0, at: 0, path: temp) }
            try second.encodeSlot().withUnsafeBytes { try writeFully(fd, $0, at: UInt64(SuperblockLayout.slotSize), path: temp) }
            guard fsync(fd) == 0 else { throw MetaStoreError.io(operation: "fsync", path: temp, errno: errno) }
        } catch {
            unlink(temp)
            throw error
        }
        guard rename(temp, path) == 0 else { throw MetaStoreError.io(operation: "rename", path: path, errno: errno) }
    }
}

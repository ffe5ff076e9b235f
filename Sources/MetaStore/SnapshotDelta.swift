internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The copy-before-write delta of one file in one snapshot (docs/FORMAT.md
/// "Snapshot delta files"). Unit 0 is a header; data unit `u` of the file as
/// it was when the snapshot was taken is stored at `(u + 1) * 4096`:
/// - a hole there (all zero bytes) means "not preserved: unchanged since";
/// - all 0xFF bytes means "preserved, and it was a hole (reads as zeros)";
/// - anything else is the unit's ciphertext, byte for byte (the XTS tweak is
///   (file id, unit), so a copy decrypts unchanged and export never decrypts).
/// Units at or above `baseUnits` (the ciphertext file's length in units when
/// the delta was made) were holes at snapshot time and are never copied.
/// A real ciphertext unit equal to all zeros or all 0xFF has probability 2^-32768.
enum DeltaFormat {
    static let unit = DataStore.blockSize
    static let magic = Array("KMSDELT1".utf8)
    static let version: UInt32 = 1

    static func offset(of unit: UInt64) -> UInt64 { (unit + 1) * UInt64(Self.unit) }

    static func header(fileID: UInt64, baseUnits: UInt64) -> [UInt8] {
        var h = magic + le32(version) + le32(UInt32(unit)) + le64(fileID) + le64(baseUnits)
        h += [UInt8](repeating: 0, count: unit - h.count)
        return h
    }

    /// The `baseUnits` of a header, after checking magic, version, unit size and file id.
    static func baseUnits(of header: UnsafeRawBufferPointer, fileID: UInt64, path: String) throws -> UInt64 {
        func field(_ at: Int, _ n: Int) -> UInt64 { (0..<n).reduce(0) { $0 | UInt64(header[at + $1]) << (8 * UInt64($1)) } }
        guard header.count >= 32, Array(header[0..<8]) == magic, field(8, 4) == UInt64(version), field(12, 4) == UInt64(unit),
              field(16, 8) == fileID else {
            throw MetaStoreError.corruptRecord(what: "snapshot delta header of \(path)")
        }
        return field(24, 8)
    }

    static func isMarker(_ bytes: UnsafeRawBufferPointer) -> Bool { bytes.allSatisfy { $0 == 0xFF } }
}


/// Read/write access to one delta file: its header and which units it holds.
/// Not synchronised: the live side uses it under the inode's write lock, a
/// snapshot delete under the paused filesystem.
final class DeltaWriter {
    let path: String
    let fileID: UInt64
    let fd: Int32
    let baseUnits: UInt64
    private var preserved: [UInt64] = []

    private init(path: String, fileID: UInt64, fd: Int32, baseUnits: UInt64) {
        self.path = path
        self.fileID = fileID
        self.fd = fd
        self.baseUnits = baseUnits
    }

    deinit { close(fd) }

    /// Opens an existing delta file, or nil if there is none.
    static func openExisting(path: String, fileID: UInt64) throws -> DeltaWriter? {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw MetaStoreError.io(operation: "open", path: path, errno: errno)
        }
        let header = UnsafeMutableRawBufferPointer.allocate(byteCount: DeltaFormat.unit, alignment: 16)
        defer { header.deallocate() }
        do {
            try readFully(fd, into: header, at: 0, path: path)
            let writer = DeltaWriter(path: path, fileID: fileID, fd: fd, baseUnits: try DeltaFormat.baseUnits(of: UnsafeRawBufferPointer(header), fileID: fileID, path: path))
            try writer.loadPreserved()
            return writer
        } catch {
            close(fd)
            throw error
        }
    }

    /// Creates a delta file whose base is `baseUnits`, durably (file and directory entry).
    /// The header is written to a temporary name first and the file linked
    /// into place with it (failing if one exists, as O_EXCL would): a view
    /// reading meanwhile sees no delta or a whole header, never an empty one.
    static func create(path: String, fileID: UInt64, baseUnits: UInt64) throws -> DeltaWriter {
        let temporary = path + ".new"
        unlink(temporary)  // left by a create that crashed
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "create", path: temporary, errno: errno) }
        let writer = DeltaWriter(path: path, fileID: fileID, fd: fd, baseUnits: baseUnits)
        defer { unlink(temporary) }
        try DeltaFormat.header(fileID: fileID, baseUnits: baseUnits).withUnsafeBytes { try writeFully(fd, $0, at: 0, path: temporary) }
        guard fdatasync(fd) == 0 else { throw MetaStoreError.io(operation: "fsync", path: temporary, errno: errno) }
        guard link(temporary, path) == 0 else { throw MetaStoreError.io(operation: "link", path: path, errno: errno) }
        try syncDirectory(containing: path)
        return writer
    }

    func isPreserved(_ u: UInt64) -> Bool {
        let word = Int(u / 64)
        return word < preserved.count && preserved[word] & (1 << (u % 64)) != 0
    }

    private func mark(_ u: UInt64) {
        let word = Int(u / 64)
        if word >= preserved.count { preserved += [UInt64](repeating: 0, count: word - preserved.count + 1) }
        preserved[word] |= 1 << (u % 64)
    }

    /// The units this delta holds, found from its data extents and checked by content.
    private func loadPreserved() throws {
        for u in try storedUnits() { mark(u) }
    }

    /// Units stored in the file (non-hole, non-zero), ascending: the data
    /// extents (SEEK_DATA/SEEK_HOLE), read 1 MiB at a time and checked by content.
    func storedUnits() throws -> [UInt64] {
        var result: [UInt64] = []
        let unit = UInt64(DeltaFormat.unit)
        let end = fileSize(fd)
        var position = off_t(unit)
        let batch = 256
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * DeltaFormat.unit, alignment: 16)
        defer { buffer.deallocate() }
        while UInt64(position) < end {
            let data = lseek(fd, position, CLINUX_SEEK_DATA)
            if data < 0 { break }  // ENXIO: no more data
            let hole = UInt64(lseek(fd, data, CLINUX_SEEK_HOLE))
            var u = max(1, UInt64(data) / unit)
            while u * unit < hole {
                let count = Int(min(UInt64(batch), (hole - u * unit + unit - 1) / unit))
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * DeltaFormat.unit])
                try readFully(fd, into: piece, at: u * unit, path: path)
                for i in 0..<count where !DataFile.isZero(UnsafeRawBufferPointer(rebasing: piece[i * DeltaFormat.unit..<(i + 1) * DeltaFormat.unit])) {
                    result.append(u + UInt64(i) - 1)
                }
                u += UInt64(count)
            }
            position = off_t(u * unit)
        }
        return result
    }

    /// Stores units `first ..< first + count` from `ciphertext` (hole units
    /// become markers), skipping units already held or at/after the base.
    /// Returns whether anything was written; the caller syncs.
    @discardableResult
    func put(first: UInt64, ciphertext: UnsafeMutableRawBufferPointer) throws -> Bool {
        let unit = DeltaFormat.unit
        let count = ciphertext.count / unit
        var wrote = false
        var index = 0
        while index < count {
            let u = first + UInt64(index)
            guard u < baseUnits, !isPreserved(u) else { index += 1; continue }
            var end = index + 1
            while end < count && first + UInt64(end) < baseUnits && !isPreserved(first + UInt64(end)) { end += 1 }
            for i in index..<end {
                let slice = UnsafeMutableRawBufferPointer(rebasing: ciphertext[i * unit..<(i + 1) * unit])
                if DataFile.isZero(UnsafeRawBufferPointer(slice)) { slice.initializeMemory(as: UInt8.self, repeating: 0xFF) }
            }
            try checkUsable()
            do { try writeFully(fd, UnsafeRawBufferPointer(rebasing: ciphertext[index * unit..<end * unit]), at: DeltaFormat.offset(of: u), path: path) } catch {
                broken = true
                throw error
            }
            // Held only once written: a failed write leaves the units to copy again.
            for i in index..<end { mark(first + UInt64(i)) }
            wrote = true
            index = end
        }
        return wrote
    }

    /// Whether a change to `units` has old contents to copy first.
    func needsCopy(_ units: Range<UInt64>) -> Bool {
        units.clamped(to: 0..<baseUnits).contains { !isPreserved($0) }
    }

    /// Copies the units of `units` not yet held from the live ciphertext file,
    /// then (with `sync`) makes them durable: after this returns the live units
    /// may change. Without it the caller holds the live change back until its
    /// own `sync` (DataFile's deferred writes).
    func preserve(_ units: Range<UInt64>, liveFD: Int32, livePath: String, sync durable: Bool = true) throws {
        let needed = units.clamped(to: 0..<baseUnits)
        guard needed.contains(where: { !isPreserved($0) }) else { return }
        // At most 1 MiB at a time, and no more than the write needs (usually one or a few units).
        let batch = Int(min(256, UInt64(needed.count)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * DeltaFormat.unit, alignment: DeltaFormat.unit)
        defer { buffer.deallocate() }
        var wrote = false
        var start = needed.lowerBound
        while start < needed.upperBound {
            let n = Int(min(UInt64(batch), needed.upperBound - start))
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n * DeltaFormat.unit])
            if (start..<start + UInt64(n)).contains(where: { !isPreserved($0) }) {
                try readFully(liveFD, into: slice, at: start * UInt64(DeltaFormat.unit), path: livePath)
                if try put(first: start, ciphertext: slice) { wrote = true }
            }
            start += UInt64(n)
        }
        if wrote && durable { try sync() }
    }

    /// After a failed write or sync, the copies on disk are unknown (and a
    /// failed fdatasync clears the error for the next one): every later
    /// change of the file through this delta fails, so no live unit
    /// overwrites a copy that may not be durable.
    private var broken = false

    private func checkUsable() throws {
        guard !broken else { throw MetaStoreError.io(operation: "write", path: path, errno: EIO) }
    }

    func sync() throws {
        try checkUsable()
        guard fdatasync(fd) == 0 else {
            broken = true
            throw MetaStoreError.io(operation: "fsync", path: path, errno: errno)
        }
    }
}

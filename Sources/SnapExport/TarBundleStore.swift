import Foundation
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// A bundle as one file: a POSIX ustar archive (`tar tf` lists it, `tar xf`
/// unpacks it into the directory layout). Objects are members appended at
/// the end, so exporting again into the same file adds only the missing
/// chunks and a new manifest member (for a name given twice the last member
/// wins, as in tar). A member cut short by a crash is dropped on the next
/// open. Reading builds an index of the members (about 150 bytes per chunk)
/// and then reads them by offset.
public final class TarBundleStore: BundleStore {
    public let path: String
    public var location: String { path }
    public private(set) var bytesSent: UInt64 = 0
    /// One stream: one put at a time, whatever is asked.
    public var uploadWidth: Int {
        get { 1 }
        set {}  // swiftlint:disable:this unused_setter_value
    }
    private let fd: Int32
    /// Member name -> (data offset, size); the last member of a name wins.
    private var index: [String: (offset: UInt64, size: Int)] = [:]
    /// Where the next member goes (the end-of-archive blocks are rewritten after it).
    private var end: UInt64 = 0

    public init(path: String, create: Bool) throws {
        self.path = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let flags = create ? O_RDWR | O_CREAT : O_RDONLY
        // O_NONBLOCK: opening a FIFO given as the bundle must fail in scan(), not hang here.
        fd = open(self.path, flags | O_CLOEXEC | O_NONBLOCK, 0o600)
        guard fd >= 0 else {
            throw errno == ENOENT ? BundleError.missing("no bundle at \(self.path)") : BundleError.io("cannot open \(self.path): \(String(cString: strerror(errno)))")
        }
        try scan()
    }

    deinit { close(fd) }

    /// Reads the member headers; stops at the end-of-archive block or at a member cut short.
    /// A malformed header is an error: the file is not a bundle, or it was altered.
    private func scan() throws {
        let fileSize = try TarBundleStore.regularFileSize(fd, path: path)
        let block = UInt64(TarHeader.blockSize)
        var position: UInt64 = 0
        var bytes = [UInt8](repeating: 0, count: TarHeader.blockSize)
        while position + block <= fileSize {
            guard try bytes.withUnsafeMutableBytes({ try readFully(fd, into: $0, at: position, path: path) }) == TarHeader.blockSize else { break }
            if bytes.allSatisfy({ $0 == 0 }) { break }
            let header = try TarHeader.parse(bytes, at: position)
            // A member longer than the rest of the file is one a crash cut short (it is always the last):
            // it is dropped and the next append overwrites it, and its size is never allocated.
            guard UInt64(header.size) <= fileSize - position - block else { break }
            index[header.name] = (position + block, header.size)
            position += block + UInt64(header.size) + Self.padding(header.size)
        }
        end = position
    }

    /// The size of the open bundle file, which must be a regular file (never a FIFO or device).
    private static func regularFileSize(_ fd: Int32, path: String) throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw BundleError.io("cannot stat \(path): \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw BundleError.usage("\(path) is not a regular file") }
        return UInt64(st.st_size)
    }

    static func padding(_ size: Int) -> UInt64 { UInt64((TarHeader.blockSize - size % TarHeader.blockSize) % TarHeader.blockSize) }

    public func exists(_ key: String, size: Int) throws -> Bool { index[key]?.size == size }

    public func put(_ key: String, bytes: UnsafeRawBufferPointer, sha256: [UInt8]) throws {
        try append(key, size: bytes.count) { try write(bytes, at: $0) }
    }

    /// Appends a member of `size` bytes whose data `fill` writes at the given offset.
    private func append(_ key: String, size: Int, fill: (UInt64) throws -> Void) throws {
        guard key.utf8.count < TarHeader.nameField.count, BundleKeys.isValid(key) else { throw BundleError.usage("not a valid tar member name: \(key)") }
        let start = end
        let block = UInt64(TarHeader.blockSize)
        try write(TarHeader(name: key, size: size).encoded(mtime: Int(time(nil))), at: start)
        try fill(start + block)
        let dataEnd = start + block + UInt64(size)
        let next = dataEnd + Self.padding(size)
        // Padding plus the two end-of-archive blocks, so the file is a valid archive after every member.
        try write([UInt8](repeating: 0, count: Int(next - dataEnd) + 2 * TarHeader.blockSize), at: dataEnd)
        index[key] = (start + block, size)
        end = next
        bytesSent += UInt64(size)
    }

    /// Appends a local file (a manifest, whatever its size) as a member, read in 1 MiB pieces,
    /// after the chunks are durable; fsync'ed.
    public func putFile(_ key: String, path source: String) throws {
        guard fdatasync(fd) == 0 else { throw BundleError.io("fsync \(path): \(String(cString: strerror(errno)))") }
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw BundleError.io("cannot read \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        var st = stat()
        fstat(input, &st)
        try append(key, size: Int(st.st_size)) { at in
            var written: UInt64 = 0
            try forEachPiece(of: input, path: source) { piece in
                try write(piece, at: at + written)
                written += UInt64(piece.count)
            }
        }
        guard fsync(fd) == 0 else { throw BundleError.io("fsync \(path): \(String(cString: strerror(errno)))") }
    }

    public func get(_ key: String, expectedSize: Int) throws -> [UInt8] {
        guard let member = index[key] else { throw BundleError.missing("\(key) is missing from \(path)") }
        guard member.size <= expectedSize else { throw BundleError.oversized(key, at: path, expected: expectedSize) }
        var bytes = [UInt8](repeating: 0, count: member.size)
        let got = try bytes.withUnsafeMutableBytes { try readFully(fd, into: $0, at: member.offset, path: path) }
        guard got == member.size else { throw BundleError.corrupt("\(key) in \(path) ends early") }
        return bytes
    }

    /// Copies a member into a local file in 1 MiB pieces.
    public func getFile(_ key: String, path target: String) throws {
        guard let member = index[key] else { throw BundleError.missing("\(key) is missing from \(path)") }
        let output = try createExclusive(target)
        defer { close(output) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done = 0
        while done < member.size {
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, member.size - done)])
            guard try readFully(fd, into: piece, at: member.offset + UInt64(done), path: path) == piece.count else {
                throw BundleError.corrupt("\(key) in \(path) ends early")
            }
            try writeFully(output, UnsafeRawBufferPointer(piece), at: UInt64(done), path: target)
            done += piece.count
        }
    }

    public func list(prefix: String) throws -> [String] { index.keys.filter { $0.hasPrefix(prefix) }.sorted() }

    private func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    private func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        try writeFully(fd, bytes, at: offset, path: path)
    }
}

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
    private let fd: Int32
    /// Member name -> (data offset, size); the last member of a name wins.
    private var index: [String: (offset: UInt64, size: Int)] = [:]
    /// Where the next member goes (the end-of-archive blocks are rewritten after it).
    private var end: UInt64 = 0
    static let block = 512

    public init(path: String, create: Bool) throws {
        self.path = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        let flags = create ? O_RDWR | O_CREAT : O_RDONLY
        fd = open(self.path, flags | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw errno == ENOENT ? BundleError.missing("no bundle at \(self.path)") : BundleError.io("cannot open \(self.path): \(String(cString: strerror(errno)))")
        }
        try scan()
    }

    deinit { close(fd) }

    /// Reads the member headers; stops at the end-of-archive block or at a member cut short.
    private func scan() throws {
        var st = stat()
        fstat(fd, &st)
        let fileSize = UInt64(st.st_size)
        var position: UInt64 = 0
        var header = [UInt8](repeating: 0, count: Self.block)
        while position + UInt64(Self.block) <= fileSize {
            guard header.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, Self.block, off_t(position)) }) == Self.block else { break }
            if header.allSatisfy({ $0 == 0 }) { break }
            guard let (name, size) = Self.parse(header) else {
                throw BundleError.corrupt("\(path) is not a kmsfs tar bundle (bad member header at byte \(position))")
            }
            let dataEnd = position + UInt64(Self.block) + UInt64(size)
            guard dataEnd <= fileSize else { break }  // cut short: dropped, overwritten by the next append
            index[name] = (position + UInt64(Self.block), size)
            position = dataEnd + Self.padding(size)
        }
        end = position
    }

    static func padding(_ size: Int) -> UInt64 { UInt64((block - size % block) % block) }

    static func parse(_ h: [UInt8]) -> (String, Int)? {
        func field(_ from: Int, _ length: Int) -> String {
            String(decoding: h[from..<from + length].prefix { $0 != 0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }
        guard field(257, 6) == "ustar", let size = Int(field(124, 12), radix: 8), let sum = Int(field(148, 8), radix: 8) else { return nil }
        var computed = 0
        for (i, b) in h.enumerated() { computed += (148..<156).contains(i) ? 0x20 : Int(b) }
        guard computed == sum, h[156] == UInt8(ascii: "0") || h[156] == 0 else { return nil }
        let name = field(0, 100)
        guard !name.isEmpty, !name.contains("..") else { return nil }
        return (name, size)
    }

    static func header(name: String, size: Int) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: block)
        func put(_ text: String, at offset: Int) { for (i, b) in text.utf8.enumerated() { h[offset + i] = b } }
        func octal(_ value: Int, width: Int) -> String {
            let digits = String(value, radix: 8)
            return String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits
        }
        put(name, at: 0)
        put(octal(0o600, width: 8), at: 100)
        put(octal(0, width: 8), at: 108)
        put(octal(0, width: 8), at: 116)
        put(octal(size, width: 12), at: 124)
        put(octal(Int(time(nil)), width: 12), at: 136)
        h[156] = UInt8(ascii: "0")
        put("ustar", at: 257)
        put("00", at: 263)
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(octal(sum, width: 7), at: 148)
        h[154] = 0
        h[155] = 0x20
        return h
    }

    public func exists(_ key: String, size: Int) throws -> Bool { index[key]?.size == size }

    public func put(_ key: String, bytes: UnsafeRawBufferPointer, sha256: [UInt8]) throws {
        try append(key, size: bytes.count) { try write(bytes, at: $0) }
    }

    /// Appends a member of `size` bytes whose data `fill` writes at the given offset.
    private func append(_ key: String, size: Int, fill: (UInt64) throws -> Void) throws {
        guard key.utf8.count < 100 else { throw BundleError.usage("tar member name too long: \(key)") }
        let start = end
        try write(Self.header(name: key, size: size), at: start)
        try fill(start + UInt64(Self.block))
        let dataEnd = start + UInt64(Self.block) + UInt64(size)
        let next = dataEnd + Self.padding(size)
        // Padding plus the two end-of-archive blocks, so the file is a valid archive after every member.
        try write([UInt8](repeating: 0, count: Int(next - dataEnd) + 2 * Self.block), at: dataEnd)
        index[key] = (start + UInt64(Self.block), size)
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

    public func get(_ key: String) throws -> [UInt8] {
        guard let member = index[key] else { throw BundleError.missing("\(key) is missing from \(path)") }
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

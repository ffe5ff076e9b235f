import Foundation
import Locking
import MetaStore
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// Where bundles live: a local directory or an S3 bucket prefix. Keys are
/// relative paths ("chunks/ab/<sha256>", "manifests/<snapshot>.jsonl").
/// Layout in docs/FORMAT.md "Snapshot bundles".
public protocol BundleStore: AnyObject {
    /// A human-readable name of the location, for messages.
    var location: String { get }
    /// Whether an object of exactly `size` bytes is stored under `key`.
    func exists(_ key: String, size: Int) throws -> Bool
    /// Stores `bytes` under `key`, atomically (readers see all or nothing).
    func put(_ key: String, bytes: UnsafeRawBufferPointer, sha256: [UInt8]) throws
    /// The same for bytes the caller hands over (a store that sends a copy can send these instead).
    func put(_ key: String, owned bytes: [UInt8], sha256: [UInt8]) throws
    /// Stores the local file at `path` under `key`, atomically.
    func putFile(_ key: String, path: String) throws
    /// Reads the object under `key`, which the manifest says holds `expectedSize` bytes, into
    /// memory. A larger object is an error (`BundleError.oversized`) and is never read whole;
    /// a shorter one is returned as it is, for the caller to report.
    func get(_ key: String, expectedSize: Int) throws -> [UInt8]
    /// Copies the object under `key` into the local file at `path`.
    func getFile(_ key: String, path: String) throws
    /// Keys that start with `prefix`.
    func list(prefix: String) throws -> [String]
    /// Bytes actually sent by puts so far (for progress and tests).
    var bytesSent: UInt64 { get }
    /// How many `exists`/`put` calls may run at once from different threads
    /// (an export's parallel uploads); 1: one at a time.
    var uploadWidth: Int { get set }
}

extension BundleStore {
    public func put(_ key: String, owned bytes: [UInt8], sha256: [UInt8]) throws {
        try bytes.withUnsafeBytes { try put(key, bytes: $0, sha256: sha256) }
    }
}

/// A value handed to another thread by a caller that makes the sharing safe
/// (a bundle store whose `uploadWidth` says it takes calls from several threads).
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// The keys of a bundle location.
enum BundleKeys {
    static func chunk(_ hex: String) -> String { "chunks/\(hex.prefix(2))/\(hex)" }
    static func manifest(_ snapshot: String) -> String { "manifests/\(snapshot).jsonl" }
    static let manifestPrefix = "manifests/"
    static let manifestSuffix = ".jsonl"
    /// The longest key accepted from a listing or an archive (S3's own limit), in bytes.
    static let maxKeyBytes = 1024

    /// Whether `key`, read from a listing or an archive, is a safe relative path: no empty,
    /// "." or ".." component, no leading "/", no spaces or control characters.
    static func isValid(_ key: String) -> Bool {
        guard !key.isEmpty, key.utf8.count <= maxKeyBytes,
              key.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f }) else { return false }
        return key.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }
}

extension BundleError {
    /// An object larger than the manifest says: refused before it is read into memory.
    static func oversized(_ key: String, at location: String, expected: Int) -> BundleError {
        .corrupt("\(key) at \(location) is larger than the \(expected) bytes the manifest says")
    }
}

/// Opens a location given on the command line: `s3://bucket/prefix`, a
/// single-file bundle (a name ending in `.tar`, or any existing regular
/// file), or a local directory.
public func openBundleStore(_ location: String, endpointURL: String?, profile: String?, insecureHTTP: Bool = false, create: Bool) throws -> any BundleStore {
    if location.hasPrefix("s3://") {
        return try S3BundleStore(url: location, endpointURL: endpointURL, profile: profile, insecureHTTP: insecureHTTP)
    }
    guard endpointURL == nil else { throw BundleError.usage("--endpoint-url is only for s3:// locations") }
    var st = stat()
    let isFile = stat(location, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
    if location.hasSuffix(".tar") || isFile { return try TarBundleStore(path: location, create: create) }
    return try LocalBundleStore(root: location, create: create)
}

/// Copies the regular file `source` (no symlink, FIFO or device) to a new file `target` in
/// 1 MiB pieces, at most the size it had when opened; returns the bytes copied.
/// With `exclusive`, `target` must not exist yet and is never reached through a symlink.
func copyFile(from source: String, to target: String, exclusive: Bool = false) throws -> UInt64 {
    let (input, size) = try openRegularFile(source)
    defer { close(input) }
    let output = exclusive ? try createExclusive(target) : open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard output >= 0 else { throw BundleError.io("cannot create \(target): \(String(cString: strerror(errno)))") }
    defer { close(output) }
    var total: UInt64 = 0
    try forEachPiece(of: input, path: source, limit: size) { piece in
        try writeFully(output, piece, at: total, path: target)
        total += UInt64(piece.count)
    }
    return total
}

/// Opens `path` for reading without following a symlink in its last component and checks
/// that it is a regular file; returns the descriptor and the file's size. O_NONBLOCK makes
/// opening a FIFO return at once (to be refused) instead of waiting for a writer.
func openRegularFile(_ path: String) throws -> (fd: Int32, size: UInt64) {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
    guard fd >= 0 else {
        switch errno {
        case ENOENT: throw BundleError.missing("\(path) does not exist")
        case ELOOP: throw BundleError.corrupt("\(path) is a symbolic link, which a bundle never holds")
        default: throw BundleError.io("cannot read \(path): \(String(cString: strerror(errno)))")
        }
    }
    var st = stat()
    guard fstat(fd, &st) == 0 else {
        let error = BundleError.io("cannot stat \(path): \(String(cString: strerror(errno)))")
        close(fd)
        throw error
    }
    guard st.st_mode & S_IFMT == S_IFREG else {
        close(fd)
        throw BundleError.corrupt("\(path) is not a regular file (a FIFO, device or directory), which a bundle never holds")
    }
    return (fd, UInt64(st.st_size))
}

/// Reads `fd` from the start in pieces of 1 MiB, up to `limit` bytes or EOF.
func forEachPiece(of fd: Int32, path: String, limit: UInt64 = .max, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { buffer.deallocate() }
    var offset: off_t = 0
    while UInt64(offset) < limit {
        let n = pread(fd, buffer.baseAddress, Int(min(UInt64(buffer.count), limit - UInt64(offset))), offset)
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw BundleError.io("reading \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { return }
        try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        offset += off_t(n)
    }
}

/// fsync `temporary`, rename it over `target`, fsync the directory.
func syncFileAndRename(_ temporary: String, to target: String) throws {
    let fd = open(temporary, O_RDONLY | O_CLOEXEC)
    guard fd >= 0, fsync(fd) == 0 else {
        if fd >= 0 { close(fd) }
        throw BundleError.io("fsync \(temporary): \(String(cString: strerror(errno)))")
    }
    close(fd)
    guard rename(temporary, target) == 0 else { throw BundleError.io("renaming \(temporary): \(String(cString: strerror(errno)))") }
    do { try syncDirectory(containing: target) } catch { throw BundleError.io("fsync of the directory of \(target): \(error)") }
}

/// A bundle in a local directory. Objects are written to a temporary name
/// and renamed; `sync()` makes everything written durable before the manifest.
public final class LocalBundleStore: BundleStore {
    public let root: String
    private let sent = Locked<UInt64>(0)
    public var bytesSent: UInt64 { sent.withLock { $0 } }
    /// Puts write distinct temporary files and rename them into place: safe from several threads.
    public var uploadWidth = 4
    public var location: String { root }

    public init(root: String, create: Bool) throws {
        self.root = root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: self.root, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw BundleError.usage("\(self.root) exists and is not a directory") }
        } else if create {
            do { try FileManager.default.createDirectory(atPath: self.root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
                throw BundleError.io("cannot create \(self.root): \(error.localizedDescription)")
            }
        } else {
            throw BundleError.missing("no bundle at \(self.root)")
        }
    }

    private func path(_ key: String) -> String { root + "/" + key }

    /// lstat: a symlink under the key is not the object (get refuses it, and put replaces it).
    public func exists(_ key: String, size: Int) throws -> Bool {
        var st = stat()
        return lstat(path(key), &st) == 0 && st.st_mode & S_IFMT == S_IFREG && Int(st.st_size) == size
    }

    public func put(_ key: String, bytes: UnsafeRawBufferPointer, sha256: [UInt8]) throws {
        let target = path(key)
        try makeParent(target)
        let temporary = Self.temporaryName(for: target)
        let fd = try createExclusive(temporary)
        do { try writeFully(fd, bytes, at: 0, path: temporary) } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, target) == 0 else { throw BundleError.io("renaming \(temporary): \(String(cString: strerror(errno)))") }
        sent.withLock { $0 += UInt64(bytes.count) }
    }

    /// Copies the file in 1 MiB pieces (a manifest can be large), after making
    /// the chunks durable, then renames it into place durably.
    public func putFile(_ key: String, path source: String) throws {
        let target = path(key)
        try makeParent(target)
        try sync()
        let temporary = Self.temporaryName(for: target)
        let copied = try copyFile(from: source, to: temporary, exclusive: true)
        do { try syncFileAndRename(temporary, to: target) } catch { unlink(temporary); throw error }
        sent.withLock { $0 += copied }
    }

    /// Makes every object written so far durable (syncfs of the bundle's filesystem).
    func sync() throws {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw BundleError.io("cannot open \(root): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard syncfs(fd) == 0 else { throw BundleError.io("syncfs \(root): \(String(cString: strerror(errno)))") }
    }

    /// Reads at most `expectedSize + 1` bytes (the extra one detects a longer file) from a
    /// regular file, so a symlink to /dev/zero or a huge file cannot exhaust memory.
    public func get(_ key: String, expectedSize: Int) throws -> [UInt8] {
        let p = path(key)
        let (fd, size) = try reportingMissing(key) { try openRegularFile(p) }
        defer { close(fd) }
        guard size <= UInt64(expectedSize) else { throw BundleError.oversized(key, at: root, expected: expectedSize) }
        var bytes = [UInt8](repeating: 0, count: expectedSize + 1)
        let got = try bytes.withUnsafeMutableBytes { try readFully(fd, into: $0, at: 0, path: p) }
        guard got <= expectedSize else { throw BundleError.oversized(key, at: root, expected: expectedSize) }
        bytes.removeLast(bytes.count - got)
        return bytes
    }

    public func getFile(_ key: String, path target: String) throws {
        _ = try reportingMissing(key) { try copyFile(from: path(key), to: target, exclusive: true) }
    }

    /// Runs `body`, reporting a missing file as a missing object of the bundle.
    private func reportingMissing<T>(_ key: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch BundleError.missing {
            throw BundleError.missing("\(key) is missing from \(root)")
        }
    }

    public func list(prefix: String) throws -> [String] {
        let directory = prefix.contains("/") ? String(prefix[..<prefix.lastIndex(of: "/")!]) : ""
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path(directory))) ?? []
        return names.map { directory.isEmpty ? $0 : directory + "/" + $0 }.filter { $0.hasPrefix(prefix) && !$0.contains(".tmp.") }.sorted()
    }

    /// A temporary name beside `target` that nobody can predict (`list` skips `.tmp.` names);
    /// it is created O_EXCL|O_NOFOLLOW, so a planted file or symlink there fails the put.
    static func temporaryName(for target: String) -> String {
        target + ".tmp." + String(format16Hex: UInt64.random(in: 0...UInt64.max))
    }

    /// Creates the directories between the bundle root and `target`, each a
    /// real directory: a symlink planted as `chunks/ab` would send chunks elsewhere.
    private func makeParent(_ target: String) throws {
        var directory = root
        for component in target.dropFirst(root.count + 1).split(separator: "/").dropLast() {
            directory += "/" + component
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw BundleError.io("cannot create \(directory): \(String(cString: strerror(errno)))")
            }
            var st = stat()
            guard lstat(directory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                throw BundleError.corrupt("\(directory) is not a directory (a symbolic link?), which a bundle never holds")
            }
        }
    }
}

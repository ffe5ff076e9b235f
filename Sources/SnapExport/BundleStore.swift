import Foundation
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
    /// Stores the local file at `path` under `key`, atomically.
    func putFile(_ key: String, path: String) throws
    /// Reads the object under `key` into memory (chunks: bounded by the chunk size).
    func get(_ key: String) throws -> [UInt8]
    /// Copies the object under `key` into the local file at `path`.
    func getFile(_ key: String, path: String) throws
    /// Keys that start with `prefix`.
    func list(prefix: String) throws -> [String]
    /// Bytes actually sent by puts so far (for progress and tests).
    var bytesSent: UInt64 { get }
}

/// The keys of a bundle location.
enum BundleKeys {
    static func chunk(_ hex: String) -> String { "chunks/\(hex.prefix(2))/\(hex)" }
    static func manifest(_ snapshot: String) -> String { "manifests/\(snapshot).jsonl" }
    static let manifestPrefix = "manifests/"
    static let manifestSuffix = ".jsonl"
}

/// Opens a location given on the command line: `s3://bucket/prefix`, a
/// single-file bundle (a name ending in `.tar`, or any existing regular
/// file), or a local directory.
public func openBundleStore(_ location: String, endpointURL: String?, profile: String?, create: Bool) throws -> any BundleStore {
    if location.hasPrefix("s3://") {
        return try S3BundleStore(url: location, endpointURL: endpointURL, profile: profile)
    }
    guard endpointURL == nil else { throw BundleError.usage("--endpoint-url is only for s3:// locations") }
    var st = stat()
    let isFile = stat(location, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
    if location.hasSuffix(".tar") || isFile { return try TarBundleStore(path: location, create: create) }
    return try LocalBundleStore(root: location, create: create)
}

/// A bundle in a local directory. Objects are written to a temporary name
/// and renamed; `sync()` makes everything written durable before the manifest.
public final class LocalBundleStore: BundleStore {
    public let root: String
    public private(set) var bytesSent: UInt64 = 0
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

    public func exists(_ key: String, size: Int) throws -> Bool {
        var st = stat()
        return stat(path(key), &st) == 0 && Int(st.st_size) == size
    }

    public func put(_ key: String, bytes: UnsafeRawBufferPointer, sha256: [UInt8]) throws {
        let target = path(key)
        try makeParent(target)
        let temporary = target + ".tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BundleError.io("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                close(fd)
                unlink(temporary)
                throw BundleError.io("writing \(temporary): \(String(cString: strerror(e)))")
            }
            done += n
        }
        close(fd)
        guard rename(temporary, target) == 0 else { throw BundleError.io("renaming \(temporary): \(String(cString: strerror(errno)))") }
        bytesSent += UInt64(bytes.count)
    }

    public func putFile(_ key: String, path source: String) throws {
        let target = path(key)
        try makeParent(target)
        try sync()
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: source))) } catch { throw BundleError.io("reading \(source): \(error.localizedDescription)") }
        do { try writeFileAtomically(target, bytes) } catch { throw BundleError.io("writing \(target): \(error)") }
        bytesSent += UInt64(bytes.count)
    }

    /// Makes every object written so far durable (syncfs of the bundle's filesystem).
    func sync() throws {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw BundleError.io("cannot open \(root): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard syncfs(fd) == 0 else { throw BundleError.io("syncfs \(root): \(String(cString: strerror(errno)))") }
    }

    public func get(_ key: String) throws -> [UInt8] {
        let p = path(key)
        guard let data = FileManager.default.contents(atPath: p) else {
            throw FileManager.default.fileExists(atPath: p) ? BundleError.io("cannot read \(p)") : BundleError.missing("\(key) is missing from \(root)")
        }
        return Array(data)
    }

    public func getFile(_ key: String, path target: String) throws {
        let p = path(key)
        guard FileManager.default.fileExists(atPath: p) else { throw BundleError.missing("\(key) is missing from \(root)") }
        do {
            try? FileManager.default.removeItem(atPath: target)
            try FileManager.default.copyItem(atPath: p, toPath: target)
        } catch { throw BundleError.io("copying \(p): \(error.localizedDescription)") }
    }

    public func list(prefix: String) throws -> [String] {
        let directory = prefix.contains("/") ? String(prefix[..<prefix.lastIndex(of: "/")!]) : ""
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path(directory))) ?? []
        return names.map { directory.isEmpty ? $0 : directory + "/" + $0 }.filter { $0.hasPrefix(prefix) && !$0.contains(".tmp.") }.sorted()
    }

    private func makeParent(_ target: String) throws {
        let parent = String(target[..<target.lastIndex(of: "/")!])
        do { try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
            throw BundleError.io("cannot create \(parent): \(error.localizedDescription)")
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// One snapshot of a filesystem (docs/FORMAT.md "Snapshots").
public struct SnapshotInfo: Sendable, Equatable {
    /// Increasing, never reused: the order of ids is the order of the copy-before-write chain.
    public var id: UInt32
    public var name: String
    /// Seconds since the Unix epoch.
    public var created: UInt64
    /// Every file id below this may be part of the snapshot; file ids at or
    /// above it were handed out later and need no preservation.
    public var fileIDLimit: UInt64
    /// A delete that merged part of this snapshot's delta away and may not
    /// have finished: hidden from mount and export, finished by the next delete.
    public var deleting: Bool

    public init(id: UInt32, name: String, created: UInt64, fileIDLimit: UInt64, deleting: Bool = false) {
        self.id = id
        self.name = name
        self.created = created
        self.fileIDLimit = fileIDLimit
        self.deleting = deleting
    }

    /// The directory name of the snapshot under `snapshots/`.
    public var directoryName: String { String(format8Hex: id) }
}

/// Where the snapshots of a store live: `<store>/snapshots/`.
public struct SnapshotPaths: Sendable {
    public let root: String
    public init(storeRoot: String) { root = storeRoot + "/snapshots" }
    public var catalog: String { root + "/catalog" }
    public func directory(_ s: SnapshotInfo) -> String { root + "/" + s.directoryName }
    public func metadata(_ s: SnapshotInfo) -> String { directory(s) + "/meta.db" }
    public func deltaDirectory(_ s: SnapshotInfo) -> String { directory(s) + "/delta" }
    /// Held shared by a mounted snapshot view, exclusive by a delete that touches it.
    public func lock(_ s: SnapshotInfo) -> String { directory(s) + "/lock" }
    public func delta(_ s: SnapshotInfo, _ id: UInt64) -> String { deltaDirectory(s) + "/" + String(format16Hex: id) }
    public func whole(_ s: SnapshotInfo, _ id: UInt64) -> String { delta(s, id) + ".whole" }
}

/// The list of snapshots: a small text file replaced atomically.
///
///     kmsfs-snapshots 1 <next id>
///     <id> <created> <file id limit> <ok|deleting> <name>
public struct SnapshotCatalog: Sendable, Equatable {
    public static let version = 1
    public var nextID: UInt32 = 1
    /// Oldest first.
    public var snapshots: [SnapshotInfo] = []

    public init() {}

    public func named(_ name: String) -> SnapshotInfo? { snapshots.first { $0.name == name } }

    /// Reads the catalog; a store without one has no snapshots.
    public static func load(_ paths: SnapshotPaths) throws -> SnapshotCatalog {
        guard let text = try readSmallFile(paths.catalog) else { return SnapshotCatalog() }
        return try parse(text, path: paths.catalog)
    }

    static func parse(_ text: String, path: String) throws -> SnapshotCatalog {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        let bad = MetaStoreError.database(operation: "read \(path)", message: "malformed snapshot catalog")
        guard !lines.isEmpty else { throw bad }
        let header = lines.removeFirst().split(separator: " ")
        guard header.count == 3, header[0] == "kmsfs-snapshots", header[1] == "\(version)", let next = UInt32(header[2]) else { throw bad }
        var catalog = SnapshotCatalog()
        catalog.nextID = next
        for line in lines {
            let f = line.split(separator: " ", maxSplits: 4)
            guard f.count == 5, let id = UInt32(f[0]), let created = UInt64(f[1]), let limit = UInt64(f[2]),
                  f[3] == "ok" || f[3] == "deleting", id < next,
                  ComponentName.isValid(String(f[4])) else { throw bad }  // a name becomes a bundle key: one safe component
            catalog.snapshots.append(SnapshotInfo(id: id, name: String(f[4]), created: created, fileIDLimit: limit, deleting: f[3] == "deleting"))
        }
        guard zip(catalog.snapshots, catalog.snapshots.dropFirst()).allSatisfy({ $0.id < $1.id }) else { throw bad }
        return catalog
    }

    var text: String {
        var out = "kmsfs-snapshots \(Self.version) \(nextID)\n"
        for s in snapshots { out += "\(s.id) \(s.created) \(s.fileIDLimit) \(s.deleting ? "deleting" : "ok") \(s.name)\n" }
        return out
    }

    /// Replaces the catalog durably (write, fsync, rename, fsync the directory).
    public func save(_ paths: SnapshotPaths) throws {
        try makeDirectory(paths.root)
        try writeFileAtomically(paths.catalog, Array(text.utf8))
    }
}

// MARK: small file helpers shared by the snapshot code

extension String {
    /// `v` as 8 lower-case hex digits (snapshot directory names).
    public init(format8Hex v: UInt32) {
        let h = String(v, radix: 16)
        self = String(repeating: "0", count: Swift.max(0, 8 - h.count)) + h
    }

    /// `v` as 16 lower-case hex digits (data, delta and manifest file ids).
    public init(format16Hex v: UInt64) {
        let h = String(v, radix: 16)
        self = String(repeating: "0", count: Swift.max(0, 16 - h.count)) + h
    }
}

/// The contents of a small text file, or nil if it does not exist.
func readSmallFile(_ path: String) throws -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        if errno == ENOENT { return nil }
        throw MetaStoreError.io(operation: "open", path: path, errno: errno)
    }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw MetaStoreError.io(operation: "read", path: path, errno: errno) }
        if n == 0 { break }
        bytes += buffer[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes `bytes` to a temporary file, fsyncs it, renames it over `path` and fsyncs the directory.
public func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: temporary, errno: errno) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            let e = errno
            close(fd)
            unlink(temporary)
            throw MetaStoreError.io(operation: "write", path: temporary, errno: e)
        }
        done += n
    }
    guard fsync(fd) == 0 else {
        let e = errno
        close(fd)
        unlink(temporary)
        throw MetaStoreError.io(operation: "fsync", path: temporary, errno: e)
    }
    close(fd)
    guard rename(temporary, path) == 0 else { throw MetaStoreError.io(operation: "rename", path: path, errno: errno) }
    try syncDirectory(containing: path)
}

/// fsync of the directory that holds `path`, so a create, rename or unlink in it is durable.
public func syncDirectory(containing path: String) throws {
    let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
    let fd = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: directory, errno: errno) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw MetaStoreError.io(operation: "fsync", path: directory, errno: errno) }
}

func makeDirectory(_ path: String) throws {
    guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw MetaStoreError.io(operation: "mkdir", path: path, errno: errno) }
}

/// The names in a directory (without . and ..); none if it does not exist.
func directoryEntries(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else {
        if errno == ENOENT { return [] }
        throw MetaStoreError.io(operation: "opendir", path: path, errno: errno)
    }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Removes a directory tree (snapshot directories hold only files and one level of subdirectories).
public func removeTree(_ path: String) throws {
    for name in try directoryEntries(path) {
        let child = path + "/" + name
        var st = stat()
        guard lstat(child, &st) == 0 else { continue }
        if st.st_mode & S_IFMT == S_IFDIR { try removeTree(child) } else if unlink(child) != 0 && errno != ENOENT {
            throw MetaStoreError.io(operation: "unlink", path: child, errno: errno)
        }
    }
    guard rmdir(path) == 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "rmdir", path: path, errno: errno) }
}

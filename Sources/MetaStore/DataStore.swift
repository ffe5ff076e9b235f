import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// Where file contents live: one ciphertext file per inode under `data/`,
/// named by the file id, fanned out over 256 subdirectories (docs/FORMAT.md "Data files").
public final class DataStore: Sendable {
    /// Plaintext and ciphertext data unit size in bytes.
    public static let blockSize = 4096
    public let directory: String
    let cipher: XTSCipher
    /// Set on a live filesystem that has snapshots (copy-before-write).
    public let preserver: SnapshotPreserver?
    /// Set on a snapshot view (read-only).
    public let overlay: SnapshotOverlay?

    public init(directory: String, cipher: XTSCipher, preserver: SnapshotPreserver? = nil, overlay: SnapshotOverlay? = nil) {
        self.directory = directory
        self.cipher = cipher
        self.preserver = preserver
        self.overlay = overlay
    }

    /// Creates the 256 fan-out directories of a new store.
    public static func createLayout(at directory: String) throws {
        for d in [directory] + (0..<256).map({ directory + "/" + [UInt8($0)].hexString }) {
            guard mkdir(d, 0o700) == 0 || errno == EEXIST else { throw MetaStoreError.io(operation: "mkdir", path: d, errno: errno) }
        }
    }

    /// The ciphertext file of `id`.
    public func path(for id: FileID) -> String { Self.path(in: directory, for: id) }

    static func path(in directory: String, for id: FileID) -> String {
        let hex = String(format16Hex: id.rawValue)
        return directory + "/" + String(hex.suffix(2)) + "/" + hex
    }

    /// Opens (creating if needed) the ciphertext file of `id`; in a snapshot
    /// view, opens it read-only if it exists.
    public func open(_ id: FileID) throws -> DataFile {
        let p = path(for: id)
        if let overlay {
            return DataFile(fd: try overlay.openLive(id.rawValue), id: id, cipher: cipher, path: p, overlay: overlay)
        }
        let fd = Glibc.open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: p, errno: errno) }
        return DataFile(fd: fd, id: id, cipher: cipher, path: p, preserver: preserver)
    }

    /// The file ids of every ciphertext file present (for fsck).
    public func fileIDs() throws -> Set<UInt64> {
        var ids = Set<UInt64>()
        for sub in (0..<256).map({ directory + "/" + [UInt8($0)].hexString }) {
            for name in try directoryEntries(sub) where name.count == 16 {
                if let id = UInt64(name, radix: 16) { ids.insert(id) }
            }
        }
        return ids
    }

    /// Deletes the ciphertext of `id`; a missing file is fine (never written).
    /// With snapshots, a file the newest snapshot still needs is moved into it instead.
    public func remove(_ id: FileID) throws {
        let p = path(for: id)
        if let preserver {
            try preserver.retire(id.rawValue, livePath: p)
            return
        }
        guard unlink(p) == 0 || errno == ENOENT else { throw MetaStoreError.io(operation: "unlink", path: p, errno: errno) }
    }

    /// Bytes the backing filesystem reports for a data file (for tests of sparseness).
    public func allocatedBytes(_ id: FileID) -> Int64 {
        var st = stat()
        guard stat(path(for: id), &st) == 0 else { return 0 }
        return Int64(st.st_blocks) * 512
    }
}

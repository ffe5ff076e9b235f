/// File names inside a store directory (docs/FORMAT.md "Store layout").
public struct StorePaths: Sendable {
    public let root: String
    public init(root: String) { self.root = root }
    /// The two-slot superblock file.
    public var superblock: String { root + "/superblock" }
    /// The SQLite metadata database (plus its -wal and -shm files).
    public var metadata: String { root + "/meta.db" }
    /// The ciphertext files.
    public var data: String { root + "/data" }
}


#if canImport(Glibc)
import Glibc
#endif

/// Group commit of the mount daemon's metadata (docs/FORMAT.md "Metadata
/// durability"). A SQLite commit costs about 100 µs (its WAL frames and
/// their writes), more than the operation it commits; with group commit,
/// operations join one open write transaction, each in its own savepoint
/// (so a failed operation still undoes only itself), and the transaction
/// commits when
/// - `window` has passed since it opened (the daemon's committer thread),
/// - it holds `maxOperations` operations,
/// - anything outside SQLite is about to change: a data or tag file is
///   written, truncated, punched or removed (`DataStore`'s barrier), so the
///   files never run ahead of the metadata that describes them,
/// - and at every fsync, snapshot and unmount.
/// A daemon killed with -9 loses at most the last `window` of operations
/// that nothing synced (like a power loss on a journalling filesystem:
/// never fsync'ed data, never a torn state, since every commit is atomic).
struct GroupCommit {
    /// How long an open transaction may wait for more operations, in microseconds.
    static let window: UInt32 = 10_000
    /// At most this many operations join one commit.
    static let maxOperations = 1000
    /// Below this much free space where the metadata lives, each operation
    /// commits by itself: a full disk then fails the operation that meets it
    /// (which may use the store's reserve), never a commit of many.
    static let minimumFreeBytes: UInt64 = 64 << 20

    /// The metadata database's directory (for the free-space check).
    let directory: String
    /// Operations in the open transaction; nil when none is open.
    var open: Int?

    init(databasePath: String) {
        let slash = databasePath.lastIndex(of: "/")
        directory = slash.map { String(databasePath[..<$0]) } ?? "."
    }

    /// Whether the metadata's filesystem has room to batch.
    func hasRoom() -> Bool {
        var s = statvfs()
        guard statvfs(directory, &s) == 0 else { return false }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize) >= Self.minimumFreeBytes
    }
}

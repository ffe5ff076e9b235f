/// The SQLite schema of meta.db, docs/FORMAT.md "Metadata store (schema v1)".
/// Names, symlink targets and xattrs are stored only as AES-SIV ciphertext.
enum MetadataSchema {
    static let version: Int64 = 1

    static let create = """
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS inodes(
            ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL, nlink INTEGER NOT NULL,
            uid INTEGER NOT NULL, gid INTEGER NOT NULL, rdev INTEGER NOT NULL, size INTEGER NOT NULL,
            atime INTEGER NOT NULL, mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, parent INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS entries(
            id INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL);
        CREATE UNIQUE INDEX IF NOT EXISTS entries_by_name ON entries(parent, name);
        CREATE TABLE IF NOT EXISTS symlinks(ino INTEGER PRIMARY KEY, target BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS xattrs(ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;
        """

    static let inodeColumns = "ino, mode, nlink, uid, gid, rdev, size, atime, mtime, ctime, parent"
    static let inodeColumnsOfI = "i.ino, i.mode, i.nlink, i.uid, i.gid, i.rdev, i.size, i.atime, i.mtime, i.ctime, i.parent"
}

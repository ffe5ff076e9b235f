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

extension MetadataSchema {
    /// The schema objects a store made by kmsfs has, as `objects(in:)` lists them.
    private static let expected: Result<Set<String>, Error> = Result {
        let db = try SQLiteDatabase(path: ":memory:", create: true)
        try db.execute(create)
        return try objects(in: db)
    }

    /// Every schema object: type, name, table and its SQL with whitespace collapsed.
    private static func objects(in db: SQLiteDatabase) throws -> Set<String> {
        var out = Set<String>()
        try db.query("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema") { row in
            let sql = row.text(3).split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).joined(separator: " ")
            out.insert([row.text(0), row.text(1), row.text(2), sql].joined(separator: "|"))
        }
        return out
    }

    /// Refuses a database whose schema is not exactly kmsfs's: a trigger, view,
    /// extra table or changed column would run or mean something kmsfs did not
    /// write (a bundle's image is outside bytes until proven otherwise).
    static func verify(_ db: SQLiteDatabase) throws {
        let found = try objects(in: db)
        let wanted = try expected.get()
        guard found == wanted else {
            let extra = found.subtracting(wanted).map { String($0.split(separator: "|").prefix(2).joined(separator: " ")) }.sorted()
            let missing = wanted.subtracting(found).map { String($0.split(separator: "|").prefix(2).joined(separator: " ")) }.sorted()
            let detail = (extra.isEmpty ? [] : ["unexpected " + extra.prefix(3).joined(separator: ", ")])
                + (missing.isEmpty ? [] : ["missing or changed " + missing.prefix(3).joined(separator: ", ")])
            throw MetaStoreError.untrustedMetadata(path: db.path, problem: "does not have kmsfs's schema (\(detail.joined(separator: "; ")))")
        }
    }

    /// Opens an existing meta.db (a store's or a snapshot image) after checking its schema.
    static func open(_ path: String, readOnly: Bool) throws -> SQLiteDatabase {
        let db = try SQLiteDatabase(path: path, create: false, readOnly: readOnly)
        try verify(db)
        return db
    }
}

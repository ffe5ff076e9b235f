/// The SQLite schemas of meta.db, docs/FORMAT.md "Metadata store". Names,
/// symlink targets and xattrs are stored only as AES-SIV ciphertext; schema 2
/// (integrity) also seals inode attributes and tags entries and counters.
enum MetadataSchema {
    /// Schema 1 (XTS-only filesystems: --no-integrity or release 1.0), or
    /// with `integrity` schema 2: sealed inode attributes, entry tags, the
    /// `seals` table and small files' units inline. One text for both, so
    /// they cannot drift apart.
    private static func tables(integrity: Bool) -> String {
        """
        PRAGMA journal_mode=WAL;
        CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS inodes(
            ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL, nlink INTEGER NOT NULL,
            uid INTEGER NOT NULL, gid INTEGER NOT NULL, rdev INTEGER NOT NULL, size INTEGER NOT NULL,
            atime INTEGER NOT NULL, mtime INTEGER NOT NULL, ctime INTEGER NOT NULL, parent INTEGER NOT NULL\(integrity ? ", sealed BLOB NOT NULL, tags_pending INTEGER NOT NULL" : ""));
        CREATE TABLE IF NOT EXISTS entries(
            id INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL\(integrity ? ", tag BLOB NOT NULL" : ""));
        CREATE UNIQUE INDEX IF NOT EXISTS entries_by_name ON entries(parent, name);
        CREATE TABLE IF NOT EXISTS symlinks(ino INTEGER PRIMARY KEY, target BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS xattrs(ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL, PRIMARY KEY(ino, name)) WITHOUT ROWID;
        \(integrity ? "CREATE TABLE IF NOT EXISTS seals(key TEXT PRIMARY KEY, value BLOB NOT NULL);" : "")
        \(integrity ? "CREATE TABLE IF NOT EXISTS inline_units(ino INTEGER PRIMARY KEY, unit BLOB NOT NULL);" : "")
        """
    }

    static func create(version: Int64) -> String { tables(integrity: version == 2) }

    static let inodeColumns = "ino, mode, nlink, uid, gid, rdev, size, atime, mtime, ctime, parent"
}

extension MetadataSchema {
    /// The schema objects a store made by kmsfs has, as `objects(in:)` lists them, by schema version.
    private static let expected: Result<[Int64: Set<String>], Error> = Result {
        try [Int64(1), 2].reduce(into: [Int64: Set<String>]()) { out, version in
            let db = try SQLiteDatabase(path: ":memory:", create: true)
            try db.execute(create(version: version))
            out[version] = try objects(in: db)
        }
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

    /// Refuses a database whose schema is not exactly one of kmsfs's: a
    /// trigger, view, extra table or changed column would run or mean
    /// something kmsfs did not write (a bundle's image is outside bytes until
    /// proven otherwise). Returns the schema version the objects match.
    @discardableResult
    static func verify(_ db: SQLiteDatabase) throws -> Int64 {
        let found = try objects(in: db)
        let schemas = try expected.get()
        if let match = schemas.first(where: { $0.value == found }) { return match.key }
        let wanted = found.contains(where: { $0.hasPrefix("table|seals|") }) ? schemas[2]! : schemas[1]!
        let extra = found.subtracting(wanted).map { String($0.split(separator: "|").prefix(2).joined(separator: " ")) }.sorted()
        let missing = wanted.subtracting(found).map { String($0.split(separator: "|").prefix(2).joined(separator: " ")) }.sorted()
        let detail = (extra.isEmpty ? [] : ["unexpected " + extra.prefix(3).joined(separator: ", ")])
            + (missing.isEmpty ? [] : ["missing or changed " + missing.prefix(3).joined(separator: ", ")])
        throw MetaStoreError.untrustedMetadata(path: db.path, problem: "does not have kmsfs's schema (\(detail.joined(separator: "; ")))")
    }

    /// Opens an existing meta.db (a store's or a snapshot image) after checking its schema.
    /// With `version`, the schema must be that one: a store with integrity
    /// must not be handed a schema-1 database (which has nothing to verify).
    static func open(_ path: String, readOnly: Bool, version: Int64? = nil) throws -> SQLiteDatabase {
        let db = try SQLiteDatabase(path: path, create: false, readOnly: readOnly)
        let found = try verify(db)
        if let version, found != version {
            throw MetaStoreError.untrustedMetadata(path: path, problem: "has schema \(found), but its filesystem \(version == 2 ? "has integrity (schema 2)" : "has no integrity (schema 1)")")
        }
        return db
    }
}

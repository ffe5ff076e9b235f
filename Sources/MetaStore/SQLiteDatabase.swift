internal import CSQLite
import Locking
#if canImport(Glibc)
import Glibc
#endif

/// A SQLite connection (sqlite3_open_v2) owning its prepared statements.
/// Not thread-safe by itself: MetadataStore serialises all use behind its lock.
final class SQLiteDatabase {
    private var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]
    let path: String

    init(path: String, create: Bool, readOnly: Bool = false) throws {
        self.path = path
        let flags = (readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0)) | SQLITE_OPEN_NOMUTEX
        guard sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(handle)
            throw MetaStoreError.database(operation: "open \(path)", message: message)
        }
        sqlite3_extended_result_codes(handle, 1)
        sqlite3_busy_timeout(handle, 5000)
        try harden()
    }

    /// A meta.db may come from a bundle or a store someone else could write:
    /// nothing in its schema may run code. Defensive mode forbids writes to
    /// the schema and raw pages; an untrusted schema may not call functions;
    /// triggers and views do not run at all (kmsfs's schema has neither, and
    /// `MetadataSchema.verify` refuses a file that has any).
    private func harden() throws {
        let flags: [(Int32, Int32, String)] = [
            (SQLITE_DBCONFIG_DEFENSIVE, 1, "defensive"), (SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, "trusted_schema"),
            (SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, "triggers"), (SQLITE_DBCONFIG_ENABLE_VIEW, 0, "views"),
        ]
        for (option, value, name) in flags where CSQLite_set_flag(handle, option, value) == 0 {
            throw MetaStoreError.database(operation: "open \(path)", message: "SQLite refused to set \(name)=\(value)")
        }
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        sqlite3_close(handle)
    }

    /// Runs SQL without results (sqlite3_exec).
    func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &error) == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? "unknown"
            sqlite3_free(error)
            if sqlite3_errcode(handle) & 0xff == SQLITE_FULL { throw MetaStoreError.io(operation: "write", path: path, errno: 28) }  // ENOSPC
            throw MetaStoreError.database(operation: String(sql.prefix(40)), message: message)
        }
    }

    /// Runs `sql` with `bindings`, calling `row` for each result row.
    func query(_ sql: String, _ bindings: [SQLValue] = [], row: (SQLRow) throws -> Void = { _ in }) throws {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        for (index, value) in bindings.enumerated() {
            let i = Int32(index + 1)
            switch value {
            case .int(let v): sqlite3_bind_int64(statement, i, v)
            case .blob(let b): b.withUnsafeBytes { _ = sqlite3_bind_blob(statement, i, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32($0.count), CSQLite_transient()) }
            case .text(let t): sqlite3_bind_text(statement, i, t, -1, CSQLite_transient())
            case .null: sqlite3_bind_null(statement, i)
            }
        }
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { return }
            guard rc == SQLITE_ROW else { throw failure(sql, rc) }
            try row(SQLRow(statement: statement))
        }
    }

    /// Runs `sql` and returns the first row's first column as an integer.
    func scalar(_ sql: String, _ bindings: [SQLValue] = []) throws -> Int64? {
        var value: Int64?
        try query(sql, bindings) { if value == nil { value = $0.int(0) } }
        return value
    }

    /// Writes a consistent copy of the database to `target` (VACUUM INTO) as a
    /// self-contained file (rollback journal, no -wal), fsync'ed.
    func copy(to target: String) throws {
        unlink(target)
        try query("VACUUM INTO ?", [.text(target)])
        let copy = try SQLiteDatabase(path: target, create: false)
        try copy.execute("PRAGMA journal_mode=DELETE")
        let fd = open(target, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: target, errno: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw MetaStoreError.io(operation: "fsync", path: target, errno: errno) }
    }

    /// Whether a transaction is open (SQLite rolls one back by itself after
    /// some failures, such as a full disk or an I/O error during a commit).
    var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// Rows changed by the last statement.
    var changes: Int { Int(sqlite3_changes(handle)) }

    /// Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back on error.
    func transaction<R>(_ body: () throws -> R) throws -> R {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    private func prepared(_ sql: String) throws -> OpaquePointer {
        if let s = statements[sql] { return s }
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else { throw failure(sql, rc) }
        statements[sql] = statement
        return statement
    }

    private func failure(_ sql: String, _ rc: Int32) -> MetaStoreError {
        let message = String(cString: sqlite3_errmsg(handle))
        if rc & 0xff == SQLITE_FULL { return .io(operation: "write", path: path, errno: 28) }  // ENOSPC
        return .database(operation: String(sql.prefix(48)), message: message)
    }
}

/// A value bound to a statement parameter.
enum SQLValue {
    case int(Int64)
    case blob([UInt8])
    case text(String)
    case null
}

/// One result row (valid only inside the row callback).
struct SQLRow {
    let statement: OpaquePointer

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }

    func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(statement, column))
        guard count > 0, let base = sqlite3_column_blob(statement, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: base, count: count))
    }

    func text(_ column: Int32) -> String {
        guard let c = sqlite3_column_text(statement, column) else { return "" }
        return String(cString: c)
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }
}

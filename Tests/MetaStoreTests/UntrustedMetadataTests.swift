import BlockCipher
import Foundation
@testable import MetaStore
import Testing

/// Runs one statement with the sqlite3 tool, as someone with write access to
/// a store (or the author of a bundle) would; returns its exit status.
func sqlite3CLI(_ path: String, _ sql: String) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    p.arguments = [path, sql]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus
}

/// A meta.db is outside bytes until proven otherwise (a bundle's image, a store
/// someone else can write): nothing in it may run, and values kmsfs never
/// writes are refused rather than used.
@Suite("Untrusted metadata databases")
struct UntrustedMetadataTests {
    let keys: FilesystemKeys
    let path: String

    init() throws {
        keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
        path = tempPath("meta.db")
        let m = try MetadataStore(path: path, names: keys.names, create: true)
        _ = try m.makeNode(parent: .root, name: Array("a".utf8), mode: 0o100644, uid: 0, gid: 0)
        try m.sync()
    }

    func isUntrusted(_ body: () throws -> Void) -> String? {
        do { try body() } catch let MetaStoreError.untrustedMetadata(_, problem) { return problem } catch { return nil }
        return nil
    }

    @Test("a trigger, a view or an extra table makes the database refused, and the trigger never runs")
    func foreignSchemaObjects() throws {
        let objects = [
            "CREATE TRIGGER pin AFTER UPDATE ON meta BEGIN UPDATE meta SET value = 2 WHERE key = 'next_ino'; END",
            "CREATE TRIGGER world AFTER INSERT ON inodes BEGIN UPDATE inodes SET mode = mode | 438 WHERE ino = new.ino; END",
            "CREATE VIEW v AS SELECT * FROM inodes",
            "CREATE TABLE extra(x)",
            "CREATE INDEX by_uid ON inodes(uid)",
        ]
        for sql in objects {
            let copy = tempPath("foreign.db")
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            #expect(try sqlite3CLI(copy, sql) == 0)
            let problem = isUntrusted { _ = try MetadataStore(path: copy, names: keys.names, create: false) }
            #expect(problem?.contains("does not have kmsfs's schema") == true, "\(sql): \(problem ?? "opened")")
            #expect(isUntrusted { _ = try MetadataStore.regularFileTotals(inImage: copy) } != nil, "image reader: \(sql)")
        }
    }

    @Test("a changed column definition is refused")
    func changedColumn() throws {
        #expect(try sqlite3CLI(path, "ALTER TABLE inodes ADD COLUMN extra INTEGER") == 0)
        #expect(isUntrusted { _ = try MetadataStore(path: path, names: keys.names, create: false) } != nil)
    }

    @Test("an inode counter at or below an inode in use is refused at open; fsck reports it and raises it")
    func counterBehind() throws {
        #expect(try sqlite3CLI(path, "UPDATE meta SET value = 2 WHERE key = 'next_ino'") == 0)
        let problem = isUntrusted { _ = try MetadataStore(path: path, names: keys.names, create: false) }
        #expect(problem?.contains("not above its highest inode 2") == true, "\(problem ?? "opened")")
        let checking = try MetadataStore(path: path, names: keys.names, create: false, checking: true)
        let data = DataStore(directory: tempPath("data"), cipher: keys.data)
        let report = try checking.check(repair: true, data: data)
        #expect(report.problems.contains { $0.contains("next inode number 2") }, "\(report.problems)")
        let raised = try checking.makeNode(parent: .root, name: Array("b".utf8), mode: 0o100644, uid: 0, gid: 0)
        #expect(raised.ino.rawValue > 1 << 32, "the raised counter skips a random 2^32.. gap: \(raised.ino)")
        _ = try MetadataStore(path: path, names: keys.names, create: false)
    }

    @Test("creating an inode never replaces one that is in use")
    func createCollision() throws {
        let m = try MetadataStore(path: path, names: keys.names, create: false)
        // The next number gets taken behind the open store's back (a forged or replayed row).
        #expect(try sqlite3CLI(path, "INSERT INTO inodes SELECT value, 33188, 1, 0, 0, 0, 7, 0, 0, 0, 1 FROM meta WHERE key = 'next_ino'") == 0)
        let problem = isUntrusted { _ = try m.makeNode(parent: .root, name: Array("b".utf8), mode: 0o100644, uid: 0, gid: 0) }
        #expect(problem?.contains("which is in use") == true, "\(problem ?? "created")")
        let taken = try #require(problem?.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .punctuationCharacters)) }.first)
        #expect(try MetadataStore(path: path, names: keys.names, create: false, checking: true).attributes(InodeNumber(taken)).size == 7,
                "the row that was there is untouched")
    }

    @Test("impossible attribute values are an error for that inode, and fsck will not repair around them")
    func impossibleValues() throws {
        let edits = ["size = -1", "mode = 1048576", "mode = 33188 + 61440 * 0 - 32768 + 57344", "nlink = -1", "uid = 4294967296", "size = 'big'"]
        for edit in edits {
            let copy = tempPath("values.db")
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            #expect(try sqlite3CLI(copy, "UPDATE inodes SET \(edit) WHERE ino = 2") == 0)
            let m = try MetadataStore(path: copy, names: keys.names, create: false)
            if !edit.contains("'big'") {
                #expect(throws: MetaStoreError.self, "\(edit)") { try m.attributes(InodeNumber(2)) }
            }
            let report = try m.check(repair: true, data: DataStore(directory: tempPath("data"), cipher: keys.data))
            #expect(!report.unrepairable.isEmpty && report.repairs.isEmpty, "\(edit): \(report.problems) \(report.repairs)")
        }
    }

    @Test("a snapshot catalog naming a snapshot with a path in it is refused")
    func catalogNames() throws {
        let good = "kmsfs-snapshots 1 3\n1 100 5 ok daily\n2 200 9 ok weekly.2\n"
        #expect(try SnapshotCatalog.parse(good, path: "c").snapshots.map(\.name) == ["daily", "weekly.2"])
        for name in ["../../manifests/x", "a/b", ".hidden", "-flag", String(repeating: "n", count: 65)] {
            #expect(throws: MetaStoreError.self, "\(name)") { try SnapshotCatalog.parse("kmsfs-snapshots 1 2\n1 100 5 ok \(name)\n", path: "c") }
        }
    }

    @Test("edited link counts, entry ids and counters are errors for the operation, never a trap")
    func extremeCountersAndLinks() throws {
        func store(_ edit: String) throws -> MetadataStore {
            let copy = tempPath("edge.db")
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            _ = try MetadataStore(path: copy, names: keys.names, create: false).makeNode(parent: .root, name: Array("d".utf8), mode: 0o040755, uid: 0, gid: 0)
            #expect(try sqlite3CLI(copy, edit) == 0)
            return try MetadataStore(path: copy, names: keys.names, create: false)
        }
        let a = Array("a".utf8), d = Array("d".utf8)
        // A named file whose count says 0: unlink must not go below zero.
        var m = try store("UPDATE inodes SET nlink = 0 WHERE ino = 2")
        #expect(throws: MetaStoreError.corruptRecord(what: "inode 2 (link count below zero)")) { try m.remove(parent: .root, name: a, directory: false) }
        // At the largest count, link is EMLINK.
        m = try store("UPDATE inodes SET nlink = 4294967295 WHERE ino = 2")
        #expect(throws: MetaStoreError.posix(EMLINK)) { try m.link(InodeNumber(2), newParent: .root, newName: Array("b".utf8)) }
        // The parent's count at zero: rmdir of a child directory, and rename over a file.
        m = try store("UPDATE inodes SET nlink = 0 WHERE ino = 1")
        #expect(throws: MetaStoreError.self) { try m.remove(parent: .root, name: d, directory: true) }
        // A counter at the top of the range, and beyond it.
        m = try store("UPDATE meta SET value = 4611686018427387904 WHERE key = 'next_ino'")
        #expect(throws: MetaStoreError.posix(ENOSPC)) { try m.makeNode(parent: .root, name: Array("c".utf8), mode: 0o100644, uid: 0, gid: 0) }
        #expect(throws: MetaStoreError.self) { try store("UPDATE meta SET value = 9223372036854775000 WHERE key = 'next_ino'") }
        // An entry id at the end of the Int64 range (readdir's cookie is id + 2).
        m = try store("UPDATE entries SET id = 9223372036854775806 WHERE ino = 2")
        #expect(throws: MetaStoreError.self) { try m.readDirectory(.root, after: 0, limit: 100) }
        #expect(try m.invalidRows().contains { $0.contains("is malformed") })
    }
}

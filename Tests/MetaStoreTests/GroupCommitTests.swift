import BlockCipher
import Foundation
import Glibc
@testable import MetaStore
import Testing

/// Group commit (docs/FORMAT.md "Metadata durability"), on a real SQLite file.
@Suite("Group commit")
struct GroupCommitTests {
    let keys: FilesystemKeys
    let path = tempPath("group.db")

    init() throws {
        keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret(), boundTo: [UInt8](repeating: 5, count: 16), integrity: true)
        _ = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: true)
    }

    /// Names in the root as another connection sees the committed database.
    func committedEntries() throws -> Int64 {
        try SQLiteDatabase(path: path, create: false, readOnly: true).scalar("SELECT count(*) FROM entries") ?? -1
    }

    func name(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test("operations share one commit: invisible to another connection until it, then all there; a failed one undoes only itself")
    func operationsShareACommit() throws {
        let m = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false, groupCommit: true)
        _ = try m.makeNode(parent: .root, name: name("a"), mode: 0o100644, uid: 0, gid: 0)
        // Fails after writing its inode and entry rows (the target is too long): undone, the others kept.
        #expect(errno { _ = try m.makeNode(parent: .root, name: name("s"), mode: 0o120777, uid: 0, gid: 0, symlinkTarget: [UInt8](repeating: 1, count: 5000)) } == ENAMETOOLONG)
        _ = try m.makeNode(parent: .root, name: name("b"), mode: 0o040755, uid: 0, gid: 0)
        #expect(errno { _ = try m.lookup(parent: .root, name: name("s")) } == ENOENT)
        #expect(try m.lookup(parent: .root, name: name("b")).isDirectory)
        #expect(try committedEntries() == 0, "nothing is committed yet")
        try m.commitPending()
        #expect(try committedEntries() == 2)
        _ = try m.makeNode(parent: .root, name: name("c"), mode: 0o100644, uid: 0, gid: 0)
        try m.sync()  // fsync commits too
        #expect(try committedEntries() == 3)
        // The committed rows sum to the sealed root: a reopen verifies them.
        let reopened = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false)
        #expect(try reopened.readDirectory(.root, after: 0, limit: 10).map { String(decoding: $0.name, as: UTF8.self) } == [".", "..", "a", "b", "c"])
    }

    @Test("a create and its removal in one commit, after the counters were rewritten, leave a seal that verifies")
    func cancellingChangesKeepTheSeal() throws {
        do {
            let m = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false, groupCommit: true)
            // The first create of a store reserves inode numbers (the counters, with the root as it stands then).
            let f = try m.makeNode(parent: .root, name: name("f"), mode: 0o100644, uid: 0, gid: 0)
            _ = try m.remove(parent: .root, name: name("f"), directory: false)
            try m.purge(f.ino)
            try m.commitPending()
        }
        _ = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false)
    }

    @Test("a failed operation keeps other files' timestamps that were pending in memory")
    func failedOperationKeepsPendingTimes() throws {
        let m = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false, groupCommit: true)
        let a = try m.makeNode(parent: .root, name: name("a"), mode: 0o100644, uid: 0, gid: 0)
        let when = Timestamp(seconds: 1_234_567_890, nanoseconds: 5)
        _ = try m.setAttributes(a.ino, AttributeChanges(mtime: when))  // times only: kept in memory
        #expect(errno { _ = try m.makeNode(parent: .root, name: name("a"), mode: 0o100644, uid: 0, gid: 0) } == EEXIST)
        #expect(try m.attributes(a.ino).mtime == when)
        try m.sync()
        #expect(try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false).attributes(a.ino).mtime == when)
    }

    @Test("closing a store commits its shared transaction")
    func closingCommits() throws {
        do {
            let m = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false, groupCommit: true)
            for i in 0..<50 { _ = try m.makeNode(parent: .root, name: name("f\(i)"), mode: 0o100644, uid: 0, gid: 0) }
            #expect(try committedEntries() == 0)
        }
        #expect(try committedEntries() == 50)
        _ = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false)
    }

    @Test("at most maxOperations join one commit")
    func boundedCommits() throws {
        let m = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false, groupCommit: true)
        for i in 0..<(GroupCommit.maxOperations + 10) { _ = try m.makeNode(parent: .root, name: name("f\(i)"), mode: 0o100644, uid: 0, gid: 0) }
        #expect(try committedEntries() >= Int64(GroupCommit.maxOperations - 1), "a full shared transaction commits by itself")
        try m.commitPending()
        #expect(try committedEntries() == Int64(GroupCommit.maxOperations + 10))
    }
}

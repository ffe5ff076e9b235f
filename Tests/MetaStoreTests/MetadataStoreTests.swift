import BlockCipher
import Foundation
import Glibc
@testable import MetaStore
import Testing

func newStore() throws -> (MetadataStore, String) {
    let path = tempPath("meta.db")
    let keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
    return (try MetadataStore(path: path, names: keys.names, create: true), path)
}

func errno(of body: () throws -> Void) -> Int32? {
    do { try body(); return nil } catch MetaStoreError.posix(let e) { return e } catch { return -1 }
}

@Suite("Metadata store semantics")
struct MetadataStoreTests {
    let reg: UInt32 = 0o100644
    let dir: UInt32 = 0o040755

    @Test("create, lookup, link counts, unlink, rmdir")
    func basics() throws {
        let (m, _) = try newStore()
        let a = try m.makeNode(parent: .root, name: Array("a".utf8), mode: reg, uid: 1, gid: 2)
        #expect(try m.lookup(parent: .root, name: Array("a".utf8)).ino == a.ino)
        #expect(errno { _ = try m.makeNode(parent: .root, name: Array("a".utf8), mode: reg, uid: 1, gid: 2) } == EEXIST)
        let d = try m.makeNode(parent: .root, name: Array("d".utf8), mode: dir, uid: 0, gid: 0)
        #expect(try m.attributes(.root).nlink == 3 && d.nlink == 2)
        _ = try m.link(a.ino, newParent: d.ino, newName: Array("b".utf8))
        #expect(try m.attributes(a.ino).nlink == 2)
        #expect(errno { _ = try m.remove(parent: .root, name: Array("d".utf8), directory: true) } == ENOTEMPTY)
        #expect(try m.remove(parent: .root, name: Array("a".utf8), directory: false).nlink == 1)
        #expect(try m.remove(parent: d.ino, name: Array("b".utf8), directory: false).nlink == 0)
        #expect(try m.orphans() == [a.ino])
        try m.purge(a.ino)
        #expect(errno { _ = try m.attributes(a.ino) } == ENOENT)
        _ = try m.remove(parent: .root, name: Array("d".utf8), directory: true)
        #expect(try m.attributes(.root).nlink == 2)
        #expect(errno { _ = try m.lookup(parent: .root, name: Array(repeating: 0x61, count: 256)) } == ENAMETOOLONG)
    }

    @Test("inode numbers are never reused after deletes")
    func noReuse() throws {
        let (m, _) = try newStore()
        var seen = Set<UInt64>()
        for i in 0..<50 {
            let a = try m.makeNode(parent: .root, name: Array("f\(i)".utf8), mode: reg, uid: 0, gid: 0)
            #expect(seen.insert(a.ino.rawValue).inserted)
            _ = try m.remove(parent: .root, name: Array("f\(i)".utf8), directory: false)
            try m.purge(a.ino)
        }
        #expect(seen.count == 50)
        #expect(try m.makeNode(parent: .root, name: Array("last".utf8), mode: reg, uid: 0, gid: 0).ino.rawValue > seen.max()!)
    }

    @Test("inode numbers are reserved in batches: reopening (as after a crash) never hands out a used one")
    func noReuseAcrossReopen() throws {
        let path = tempPath("reopen.db")
        let keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
        var highest: UInt64 = 0
        for round in 0..<4 {
            let m = try MetadataStore(path: path, names: keys.names, create: round == 0)
            for i in 0..<(round == 1 ? 300 : 7) {  // round 1 crosses a batch boundary
                let a = try m.makeNode(parent: .root, name: Array("r\(round)-\(i)".utf8), mode: reg, uid: 0, gid: 0)
                #expect(a.ino.rawValue > highest, "round \(round): \(a.ino) reused or out of order")
                highest = a.ino.rawValue
            }
        }
    }

    @Test("rename: replace, NOREPLACE, EXCHANGE, loops, directory link counts")
    func rename() throws {
        let (m, _) = try newStore()
        let x = try m.makeNode(parent: .root, name: Array("x".utf8), mode: dir, uid: 0, gid: 0)
        let y = try m.makeNode(parent: .root, name: Array("y".utf8), mode: dir, uid: 0, gid: 0)
        let f = try m.makeNode(parent: x.ino, name: Array("f".utf8), mode: reg, uid: 0, gid: 0)
        let g = try m.makeNode(parent: y.ino, name: Array("g".utf8), mode: reg, uid: 0, gid: 0)
        #expect(errno { _ = try m.rename(parent: x.ino, name: Array("f".utf8), newParent: y.ino, newName: Array("g".utf8), flags: RenameFlags.noReplace) } == EEXIST)
        _ = try m.rename(parent: x.ino, name: Array("f".utf8), newParent: y.ino, newName: Array("g".utf8), flags: RenameFlags.exchange)
        #expect(try m.lookup(parent: y.ino, name: Array("g".utf8)).ino == f.ino)
        #expect(try m.lookup(parent: x.ino, name: Array("f".utf8)).ino == g.ino)
        let replaced = try m.rename(parent: x.ino, name: Array("f".utf8), newParent: y.ino, newName: Array("g".utf8), flags: 0)
        #expect(replaced?.ino == f.ino && replaced?.nlink == 0)
        #expect(errno { _ = try m.rename(parent: .root, name: Array("x".utf8), newParent: x.ino, newName: Array("inside".utf8), flags: 0) } == EINVAL)
        _ = try m.rename(parent: .root, name: Array("x".utf8), newParent: y.ino, newName: Array("x2".utf8), flags: 0)
        #expect(try m.attributes(y.ino).nlink == 3 && m.attributes(.root).nlink == 3)
        #expect(try m.attributes(x.ino).parent == y.ino)
    }

    @Test("names, symlink targets and xattrs are ciphertext in the database file")
    func encryptedAtRest() throws {
        let (m, path) = try newStore()
        let marker = "plaintext-marker-91c2"
        let f = try m.makeNode(parent: .root, name: Array("\(marker)-name".utf8), mode: reg, uid: 0, gid: 0)
        _ = try m.makeNode(parent: .root, name: Array("link".utf8), mode: 0o120777, uid: 0, gid: 0, symlinkTarget: Array("\(marker)-target".utf8))
        try m.setXattr(f.ino, name: Array("user.\(marker)".utf8), value: Array("\(marker)-value".utf8), flags: 0)
        try m.setXattr(f.ino, name: Array("user.empty".utf8), value: [], flags: 0)
        #expect(try m.getXattr(f.ino, name: Array("user.empty".utf8)) == [])
        #expect(try m.listXattrs(f.ino).count == 2)
        try m.sync()
        for suffix in ["", "-wal"] {
            let bytes = Array(FileManager.default.contents(atPath: path + suffix) ?? Data())
            #expect(!contains(bytes, Array(marker.utf8)), "marker in meta.db\(suffix)")
        }
        let entries = try m.readDirectory(.root, after: 0, limit: 100)
        #expect(entries.map { String(decoding: $0.name, as: UTF8.self) } == [".", "..", "\(marker)-name", "link"])
        #expect(entries.map(\.cookie) == [1, 2, entries[2].cookie, entries[2].cookie + 1])
        #expect(try m.readDirectory(.root, after: entries[2].cookie, limit: 100).count == 1)
    }

    @Test("a database opened with another key refuses to decrypt names")
    func wrongKey() throws {
        let (m, path) = try newStore()
        _ = try m.makeNode(parent: .root, name: Array("a".utf8), mode: reg, uid: 0, gid: 0)
        try m.sync()
        let other = try MetadataStore(path: path, names: FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret()).names, create: false)
        #expect(throws: MetaStoreError.corruptRecord(what: "directory entry in inode 1")) { _ = try other.readDirectory(.root, after: 2, limit: 10) }
        #expect(errno { _ = try other.lookup(parent: .root, name: Array("a".utf8)) } == ENOENT)
    }
}

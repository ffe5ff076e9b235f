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

/// The row root (integrity on) through every kind of change, reopened after
/// each round without a sync or close, as a crashed daemon's store would be.
@Suite("Row root")
struct RowRootTests {
    @Test("the row root's sum wraps modulo 2^256, carries and borrows across all four words")
    func arithmetic() throws {
        let ones = [UInt8](repeating: 0xff, count: 32)
        var r = try #require(RowRoot(bytes: ones))
        let one = try #require(RowRoot(bytes: [1] + [UInt8](repeating: 0, count: 31)))
        r.add(one)
        #expect(r == .zero)
        r.subtract(one)
        #expect(r.bytes == ones)
        let random = try #require(RowRoot(bytes: (0..<32).map { _ in UInt8.random(in: 0...255) }))
        var s = RowRoot.zero
        s.add(random)
        s.add(random)
        s.subtract(random)
        #expect(s == random)
    }

    @Test("seeded random creates, links, renames, xattrs, chmods, digests, removes and purges keep the row root; a replayed row is refused")
    func randomChangesKeepTheRoot() throws {
        let path = tempPath("root.db")
        let keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret(), boundTo: [UInt8](repeating: 3, count: 16), integrity: true)
        var names: [String] = []
        var rng = SystemRandomNumberGenerator()
        for round in 0..<6 {
            // Rounds 2, 3 and 5 share commits (the daemon's group commit), with failing operations among them.
            let m = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: round == 0, groupCommit: [2, 3, 5].contains(round))
            for step in 0..<(round == 1 ? 300 : 60) {  // round 1 crosses an inode batch
                if step % 9 == 4, let existing = names.first {  // fails after its inode and entry rows are written
                    #expect(errno { _ = try m.makeNode(parent: .root, name: Array("bad\(step)".utf8), mode: 0o120777, uid: 0, gid: 0,
                                                       symlinkTarget: [UInt8](repeating: 0x74, count: 5000)) } == ENAMETOOLONG)
                    #expect(errno { _ = try m.makeNode(parent: .root, name: Array(existing.utf8), mode: 0o100644, uid: 0, gid: 0) } == EEXIST)
                }
                let name = "r\(round)s\(step)"
                let pick = names.isEmpty ? 0 : Int.random(in: 0..<9, using: &rng)
                let other = names.randomElement(using: &rng).map { Array($0.utf8) } ?? []
                func ino(_ n: [UInt8]) throws -> InodeNumber { try m.lookup(parent: .root, name: n).ino }
                switch pick {
                case 0, 1:
                    _ = try m.makeNode(parent: .root, name: Array(name.utf8), mode: 0o100644, uid: 0, gid: 0)
                    names.append(name)
                case 2:
                    _ = try m.makeNode(parent: .root, name: Array(name.utf8), mode: 0o120777, uid: 0, gid: 0, symlinkTarget: Array("t\(step)".utf8))
                    names.append(name)
                case 3:
                    _ = try? m.link(try ino(other), newParent: .root, newName: Array(name.utf8))
                    if (try? m.lookup(parent: .root, name: Array(name.utf8))) != nil { names.append(name) }
                case 4:
                    let target = names.randomElement(using: &rng)!
                    let flags: UInt32 = Bool.random(using: &rng) ? RenameFlags.exchange : 0
                    if let replaced = try m.rename(parent: .root, name: other, newParent: .root, newName: Array(target.utf8), flags: flags),
                       replaced.nlink == 0 { try m.purge(replaced.ino) }
                    if flags == 0 && Array(target.utf8) != other { names.removeAll { Array($0.utf8) == other } }
                case 5:
                    try m.setXattr(try ino(other), name: Array("user.k".utf8), value: Array("v\(step)".utf8), flags: 0)
                case 6:
                    try? m.removeXattr(try ino(other), name: Array("user.k".utf8))
                case 7:
                    let n = try ino(other)
                    _ = try m.setAttributes(n, AttributeChanges(mode: 0o600))
                    if try m.attributes(n).isRegular {
                        try m.setContentDigests([(n, [UInt8](repeating: UInt8(step & 0xff), count: 32))])
                        try m.markTagsPending(n)
                    }
                default:
                    let removed = try m.remove(parent: .root, name: other, directory: false)
                    if removed.nlink == 0 { try m.purge(removed.ino) }
                    names.removeAll { Array($0.utf8) == other }
                }
            }
            if round % 2 == 1 { try m.flush() }
            if round == 2 { try m.sync() }  // (round 3's and 5's shared transactions commit when their store closes)
        }
        // Reopens verify; now one xattr row put back as an older value would be.
        let m = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false)
        let victim = try #require(names.first)
        let ino = try m.lookup(parent: .root, name: Array(victim.utf8)).ino
        try m.setXattr(ino, name: Array("user.k".utf8), value: Array("old".utf8), flags: 0)
        let db = try SQLiteDatabase(path: path, create: false)
        var old: [UInt8] = []
        try db.query("SELECT value FROM xattrs WHERE ino = ?", [.int(Int64(ino.rawValue))]) { old = $0.blob(0) }
        try m.setXattr(ino, name: Array("user.k".utf8), value: Array("new".utf8), flags: 0)
        try db.query("UPDATE xattrs SET value = ? WHERE ino = ?", [.blob(old), .int(Int64(ino.rawValue))])
        #expect(throws: MetaStoreError.rowsReplaced) { _ = try MetadataStore(path: path, names: keys.names, integrity: keys.integrity, create: false) }
    }
}

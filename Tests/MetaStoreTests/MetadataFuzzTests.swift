import BlockCipher
import Foundation
@testable import MetaStore
import Testing

/// Hostile metadata records: every column of every table is overwritten with
/// extreme or random values (as a damaged or forged meta.db would hold), and
/// the store is used and checked. It may refuse, never crash.
@Suite struct MetadataFuzzTests {
    @Test("random and extreme values in metadata records are refused or tolerated, never a crash")
    func hostileRecords() throws {
        let keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
        let base = tempPath("fuzz-base.db")
        do {
            let m = try MetadataStore(path: base, names: keys.names, create: true)
            let d = try m.makeNode(parent: .root, name: Array("d".utf8), mode: 0o040755, uid: 0, gid: 0)
            for i in 0..<6 {
                let f = try m.makeNode(parent: i % 2 == 0 ? .root : d.ino, name: Array("f\(i)".utf8), mode: 0o100644, uid: 0, gid: 0)
                try m.setXattr(f.ino, name: Array("user.k".utf8), value: [1, 2, 3], flags: 0)
            }
            _ = try m.makeNode(parent: d.ino, name: Array("s".utf8), mode: 0o120777, uid: 0, gid: 0, symlinkTarget: Array("target".utf8))
            try m.sync()
        }
        let extremes: [String] = ["0", "-1", "1", "9223372036854775807", "-9223372036854775808", "4294967296", "2147483648",
                                  "x'00'", "x'ffffffffffffffffffff'", "'text'", "NULL"]
        var rng = SystemRandomNumberGenerator()
        let columns: [(table: String, columns: [String])] = [
            ("inodes", ["ino", "mode", "nlink", "uid", "gid", "rdev", "size", "atime", "mtime", "ctime", "parent"]),
            ("entries", ["parent", "name", "ino"]), ("symlinks", ["ino", "target"]), ("xattrs", ["ino", "name", "value"]),
        ]
        let data = DataStore(directory: tempPath("fuzz-data"), cipher: keys.data)
        for round in 0..<300 {
            let path = tempPath("fuzz-\(round).db")
            try FileManager.default.copyItem(atPath: base, toPath: path)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let (table, names) = columns[Int.random(in: 0..<columns.count, using: &rng)]
            let column = names[Int.random(in: 0..<names.count, using: &rng)]
            let value = Bool.random(using: &rng) ? extremes[Int.random(in: 0..<extremes.count, using: &rng)] : String(Int64.random(in: .min ... .max, using: &rng))
            let r = try sqlite3CLI(path, "UPDATE OR IGNORE \(table) SET \(column) = \(value) WHERE rowid IN (SELECT rowid FROM \(table) ORDER BY random() LIMIT 2)")
            guard r == 0 else { continue }  // a WITHOUT ROWID table, or a constraint: nothing changed
            guard let m = try? MetadataStore(path: path, names: keys.names, create: false) else { continue }
            for ino in [1, 2, 3, 4, 5, 8, 9].map({ InodeNumber(UInt64($0)) }) {
                _ = try? m.attributes(ino)
                _ = try? m.readDirectory(ino, after: 0, limit: 100)
                _ = try? m.readLink(ino)
                _ = try? m.listXattrs(ino)
                _ = try? m.lookup(parent: ino, name: Array("f0".utf8))
            }
            _ = try? m.check(repair: round % 2 == 0, data: data)
            _ = try? m.orphans()
        }
    }
}

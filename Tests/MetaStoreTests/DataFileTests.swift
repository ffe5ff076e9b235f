import BlockCipher
import Foundation
@testable import MetaStore
import TestSupport
import Testing

@Suite("Ciphertext data files against an in-memory model")
struct DataFileTests {
    func makeFile(integrity: Bool = false) throws -> (DataStore, DataFile) {
        let dir = tempPath("data")
        try DataStore.createLayout(at: dir)
        let keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret(), boundTo: [UInt8](repeating: 7, count: 16), integrity: integrity)
        let store = DataStore(directory: dir, cipher: keys.data, unitMAC: keys.integrity?.units)
        return (store, try store.open(FileID(42)))
    }

    func read(_ f: DataFile, _ offset: UInt64, _ count: Int, _ size: UInt64) throws -> [UInt8] {
        try f.read(offset: offset, count: count, fileSize: size) { Array($0) }
    }

    /// With integrity, every read also verifies every unit's tag: a write,
    /// truncate or punch that left a record behind its unit would be an EIO here.
    @Test("seeded random writes, truncates and punches match a byte-array model", arguments: [false, true])
    func differential(integrity: Bool) throws {
        for seed in 1...6 {
            let (_, f) = try makeFile(integrity: integrity)
            var model = [UInt8]()
            var rng = SplitMix(seed: UInt64(seed))
            for step in 0..<300 {
                let op = rng.next() % 10
                if op < 6 {
                    let offset = Int(rng.next() % 70_000)
                    let count = Int(rng.next() % 9_000) + 1
                    let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    try bytes.withUnsafeBytes { try f.write(offset: UInt64(offset), data: $0, fileSize: UInt64(model.count)) }
                    if model.count < offset + count { model += [UInt8](repeating: 0, count: offset + count - model.count) }
                    model.replaceSubrange(offset..<offset + count, with: bytes)
                } else if op < 8 {
                    let newSize = Int(rng.next() % 80_000)
                    try f.truncate(from: UInt64(model.count), to: UInt64(newSize))
                    if step % 7 == 0 { try f.settle(f.unsettledTags()) }  // as fsync does, mid-sequence
                    model = newSize < model.count ? Array(model.prefix(newSize)) : model + [UInt8](repeating: 0, count: newSize - model.count)
                } else {
                    let offset = Int(rng.next() % 70_000), length = Int(rng.next() % 20_000) + 1
                    try f.zero(offset: UInt64(offset), length: UInt64(length), fileSize: UInt64(model.count))
                    if offset < model.count { model.replaceSubrange(offset..<min(model.count, offset + length), with: [UInt8](repeating: 0, count: min(model.count, offset + length) - offset)) }
                }
                let whole = try read(f, 0, model.count + 100, UInt64(model.count))
                #expect(whole == model, "seed \(seed) step \(step) op \(op)")
                if whole != model { return }
                let o = Int(rng.next() % UInt64(max(1, model.count)))
                #expect(try read(f, UInt64(o), 5000, UInt64(model.count)) == Array(model[o..<min(model.count, o + 5000)]))
            }
        }
    }

    @Test("unit tags: both slots verify until settled, then only the current one; a zeroed or moved unit fails; holes cost no record")
    func unitTags() throws {
        let (store, f) = try makeFile(integrity: true)
        let path = store.path(for: FileID(42))
        func unit(_ u: Int) -> [UInt8] { Array(FileManager.default.contents(atPath: path)![u * 4096..<(u + 1) * 4096]) }
        func put(_ bytes: [UInt8], _ u: Int) {
            let h = FileHandle(forWritingAtPath: path)!
            h.seek(toFileOffset: UInt64(u * 4096))
            h.write(Data(bytes))
            h.closeFile()
        }
        let size: UInt64 = 3 * 4096
        for (u, byte) in [(0, 0x61), (2, 0x63)] as [(Int, UInt8)] {
            try [UInt8](repeating: byte, count: 4096).withUnsafeBytes { try f.write(offset: UInt64(u * 4096), data: $0, fileSize: size) }
        }
        #expect(try read(f, 4096, 4096, size) == [UInt8](repeating: 0, count: 4096), "a never-written unit is a hole")
        let first = unit(0)
        try [UInt8](repeating: 0x62, count: 4096).withUnsafeBytes { try f.write(offset: 0, data: $0, fileSize: size) }
        let second = unit(0)
        put(first, 0)
        #expect(try read(f, 0, 4096, size) == [UInt8](repeating: 0x61, count: 4096), "before settling, the previous content still verifies (a crash may have left it)")
        put(second, 0)
        try f.settle(f.unsettledTags())
        put(first, 0)
        #expect(throws: MetaStoreError.self, "after settling, the old copy fails") { try read(f, 0, 4096, size) }
        put(second, 0)
        #expect(try read(f, 0, 4096, size) == [UInt8](repeating: 0x62, count: 4096))
        put(unit(2), 0)
        #expect(throws: MetaStoreError.self, "a unit moved from another offset fails") { try read(f, 0, 4096, size) }
        put(second, 0)
        put([UInt8](repeating: 0, count: 4096), 2)
        #expect(throws: MetaStoreError.self, "a zeroed written unit fails") { try read(f, 2 * 4096, 4096, size) }
        try f.zero(offset: 2 * 4096, length: 4096, fileSize: size)
        #expect(try read(f, 2 * 4096, 4096, size) == [UInt8](repeating: 0, count: 4096), "a punched unit is a hole that verifies")
        #expect(FileManager.default.contents(atPath: path + ".tags")?.count == 3 * 32)
        let sparse = try store.open(FileID(43))
        try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try sparse.write(offset: 1 << 30, data: $0, fileSize: 0) }
        #expect(store.allocatedBytes(FileID(43)) < 1 << 20)
        #expect(try read(sparse, 0, 4096, (1 << 30) + 10) == [UInt8](repeating: 0, count: 4096))
    }

    @Test("a closed file's unsettled units settle with the store: then an old copy of a unit no longer verifies")
    func closedFilesSettle() throws {
        let (store, first) = try makeFile(integrity: true)
        let path = store.path(for: FileID(42))
        try [UInt8](repeating: 1, count: 4096).withUnsafeBytes { try first.write(offset: 0, data: $0, fileSize: 4096) }
        try first.settle(first.unsettledTags())
        let old = Array(FileManager.default.contents(atPath: path)!)
        try [UInt8](repeating: 2, count: 4096).withUnsafeBytes { try first.write(offset: 0, data: $0, fileSize: 4096) }
        let new = Array(FileManager.default.contents(atPath: path)!)
        #expect(!store.mustSettle, "one unit is far below the limit")
        _ = consume first  // closed: its unsettled unit goes to the store
        try store.settleClosedFiles()
        func put(_ bytes: [UInt8]) {  // in place, as an attacker would (the open fd sees it)
            let h = FileHandle(forWritingAtPath: path)!
            h.write(Data(bytes))
            h.closeFile()
        }
        put(old)
        let reopened = try store.open(FileID(42))
        #expect(throws: MetaStoreError.self, "settled: the old copy fails") { try read(reopened, 0, 4096, 4096) }
        put(new)
        #expect(try read(reopened, 0, 4096, 4096) == [UInt8](repeating: 2, count: 4096))
    }

    @Test("content digests: the same from settled tags as from the ciphertext, holes punched or never written add nothing, any changed unit changes it")
    func contentDigests() throws {
        let (store, f) = try makeFile(integrity: true)
        let size: UInt64 = 8 * 4096
        for u in [0, 1, 5] { try [UInt8](repeating: UInt8(u + 1), count: 4096).withUnsafeBytes { try f.write(offset: UInt64(u) * 4096, data: $0, fileSize: size) } }
        try f.zero(offset: 4096, length: 4096, fileSize: size)  // unit 1: a hole on purpose (it carries a hole tag)
        try f.settle(f.unsettledTags())
        let fromTags = try store.contentDigest(FileID(42), size: size)
        let mac = try #require(store.unitMAC)
        func fromCiphertext(_ bytes: [UInt8]) throws -> [UInt8] {
            let d = ContentDigester(fileID: FileID(42), mac: mac)
            try bytes.withUnsafeBytes { try d.add(ciphertext: $0, first: 0) }
            return d.finalize()
        }
        let path = store.path(for: FileID(42))
        var raw = Array(FileManager.default.contents(atPath: path)!)
        raw += [UInt8](repeating: 0, count: Int(size) - raw.count)
        #expect(try fromCiphertext(raw) == fromTags, "one definition, two sources")
        #expect(try store.verifyContent(FileID(42), size: size, digest: fromTags) == nil)
        var appended = raw
        appended[7 * 4096] = 1
        #expect(try fromCiphertext(appended) != fromTags, "a data unit where the file had a hole")
        var moved = raw
        moved.replaceSubrange(0..<4096, with: raw[5 * 4096..<6 * 4096])
        #expect(try fromCiphertext(moved) != fromTags, "a unit moved within the file")
        // A record copied over another: the tag file no longer gives the digest.
        let tags = FileHandle(forUpdatingAtPath: path + ".tags")!
        tags.seek(toFileOffset: 5 * 32)
        let record5 = tags.readData(ofLength: 32)
        tags.seek(toFileOffset: 0)
        tags.write(record5)
        tags.closeFile()
        #expect(throws: MetaStoreError.self) { _ = try store.verifyContent(FileID(42), size: size, digest: fromTags) }
        let d = ContentDigester(fileID: FileID(42), mac: mac)
        try raw.withUnsafeBytes { try d.add(ciphertext: UnsafeRawBufferPointer(rebasing: $0[5 * 4096..<6 * 4096]), first: 5) }
        #expect(throws: MetaStoreError.self, "units out of order") {
            try raw.withUnsafeBytes { try d.add(ciphertext: UnsafeRawBufferPointer(rebasing: $0[0..<4096]), first: 0) }
        }
    }

    @Test("units a closed handle left unsettled and a later truncation cut off do not lengthen the tag file when they settle")
    func cutUnitsDoNotSettle() throws {
        let (store, first) = try makeFile(integrity: true)
        let path = store.path(for: FileID(42))
        let data = [UInt8](repeating: 7, count: 13 * 4096)
        try data.withUnsafeBytes { try first.write(offset: 0, data: $0, fileSize: 0) }
        _ = consume first  // closed: 13 unsettled units go to the store
        let second = try store.open(FileID(42))
        try second.truncate(from: UInt64(data.count), to: 5000)
        try [UInt8](repeating: 8, count: 100).withUnsafeBytes { try second.write(offset: 0, data: $0, fileSize: 5000) }
        _ = consume second
        try store.settleClosedFiles()
        let tags = try FileManager.default.attributesOfItem(atPath: path + ".tags")[.size] as? Int
        #expect(tags == 2 * 32, "two units, two records")
        _ = try store.contentDigest(FileID(42), size: 5000)
    }

    @Test("holes stay holes, and ciphertext differs from plaintext")
    func sparse() throws {
        let (store, f) = try makeFile()
        let plain = [UInt8](repeating: 0x41, count: 4096)
        try plain.withUnsafeBytes { try f.write(offset: 8 << 20, data: $0, fileSize: 0) }
        #expect(store.allocatedBytes(FileID(42)) < 1 << 20)
        #expect(try read(f, 4096 * 10, 4096, (8 << 20) + 4096) == [UInt8](repeating: 0, count: 4096))
        let raw = Array(FileManager.default.contents(atPath: store.path(for: FileID(42)))!)
        #expect(raw.count == (8 << 20) + 4096)
        #expect(!contains(raw, [UInt8](repeating: 0x41, count: 64)))
    }
}


/// Naive subsequence search (Foundation's Data.range(of:) is avoided in tests).
func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
    let first = needle[0]
    var i = 0
    while i <= haystack.count - needle.count {
        if haystack[i] == first && Array(haystack[i..<i + needle.count]) == needle { return true }
        i += 1
    }
    return false
}

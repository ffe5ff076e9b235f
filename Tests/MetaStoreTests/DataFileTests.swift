import BlockCipher
import Foundation
@testable import MetaStore
import TestSupport
import Testing

@Suite("Ciphertext data files against an in-memory model")
struct DataFileTests {
    func makeFile() throws -> (DataStore, DataFile) {
        let dir = tempPath("data")
        try DataStore.createLayout(at: dir)
        let keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
        let store = DataStore(directory: dir, cipher: keys.data)
        return (store, try store.open(FileID(42)))
    }

    func read(_ f: DataFile, _ offset: UInt64, _ count: Int, _ size: UInt64) throws -> [UInt8] {
        try f.read(offset: offset, count: count, fileSize: size) { Array($0) }
    }

    @Test("seeded random writes, truncates and punches match a byte-array model")
    func differential() throws {
        for seed in 1...6 {
            let (_, f) = try makeFile()
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

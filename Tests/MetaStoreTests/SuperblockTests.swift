import BlockCipher
import Foundation
@testable import MetaStore
import Testing

func tempPath(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "ms-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/" + name
}

func sampleSuperblock() -> Superblock {
    Superblock(uuid: Array(0..<16), createdAt: 1_700_000_000, keyCheckValue: [UInt8](repeating: 0xCC, count: 32),
               kms: StoredKMSReference(type: "local", address: "/var/lib/kmsfs/local.key", keyIdentifier: "keyfile", keyVersion: ""),
               wrappedKey: Array("KVWK-envelope-bytes".utf8))
}

@Suite("Superblock codec and corruption")
struct SuperblockTests {
    @Test("create, read back, write alternates slots with a growing generation")
    func roundTrip() throws {
        let path = tempPath("superblock")
        let sb = sampleSuperblock()
        try SuperblockFile.create(sb, at: path)
        var read = try SuperblockFile.read(path)
        #expect(read.generation == 1)
        #expect(read.kms == sb.kms && read.wrappedKey == sb.wrappedKey && read.uuid == sb.uuid && read.keyCheckValue == sb.keyCheckValue)
        #expect(read.uuidString == "00010203-0405-0607-0809-0a0b0c0d0e0f")
        read.kms.keyVersion = "2"
        let written = try SuperblockFile.write(read, to: path)
        #expect(written.generation == 2)
        let again = try SuperblockFile.read(path)
        #expect(again.generation == 2 && again.kms.keyVersion == "2")
        // Slot 1 still holds generation 1: tearing slot 0 falls back to it.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[10] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(try SuperblockFile.read(path).generation == 1)
    }

    @Test("a new superblock binds its key-check value to its UUID (incompatible feature 0x1); an old one does not")
    func boundKeyCheckFeature() throws {
        let old = sampleSuperblock()
        let new = Superblock.bound(uuid: old.uuid, createdAt: old.createdAt, keyCheckValue: old.keyCheckValue, kms: old.kms, wrappedKey: old.wrappedKey, integrity: false)
        let path = tempPath("bound")
        try SuperblockFile.create(new, at: path)
        let read = try SuperblockFile.read(path)
        #expect(read.incompatFeatures == 0x1 && read.keyCheckBinding == old.uuid)
        #expect(old.keyCheckBinding == nil)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes[12] == 0x1, "the feature word at offset 12 (a kmsfs that does not know it refuses the store)")
    }

    @Test("fresh superblock layout: magic, version, lengths and checksum at the documented offsets")
    func layout() throws {
        let slot = try sampleSuperblock().encodeSlot()
        #expect(slot.count == 4096)
        #expect(Array(slot[0..<8]) == Array("KMSFS\0SB".utf8))
        #expect(slot[8] == 1 && slot[9] == 0 && slot[10] == 0)
        #expect(Array(slot[32..<48]) == Array(0..<16))
        let kmsLength: Int = 8 + 5 + 24 + 7
        #expect(Int(u16(slot, 96)) == kmsLength)
        let end = 112 + Int(u16(slot, 96)) + Int(u16(slot, 98))
        #expect(Array(slot[end..<end + 32]) == SHA256.hash(Array(slot[0..<end])))
        #expect(slot[(end + 32)...].allSatisfy { $0 == 0 })
        // No key material: the slot is only what was given.
        #expect(!String(decoding: slot, as: UTF8.self).contains("secret"))
    }

    func problem(_ mutate: (inout [UInt8]) -> Void) -> MetaStoreError.SuperblockProblem? {
        var slot = try! sampleSuperblock().encodeSlot()
        mutate(&slot)
        do {
            _ = try Superblock.decodeSlot(slot)
            return nil
        } catch { return error }
    }

    func reseal(_ slot: inout [UInt8]) {
        let end = 112 + Int(u16(slot, 96)) + Int(u16(slot, 98))
        guard end + 32 <= slot.count else { return }
        slot.replaceSubrange(end..<end + 32, with: SHA256.hash(Array(slot[0..<end])))
    }

    @Test("each corruption gets its own documented error")
    func corruptions() {
        #expect(problem { $0[40] ^= 1 } == .checksumMismatch)
        #expect(problem { $0 = Array($0.prefix(50)) } == .truncated(bytes: 50))
        #expect(problem { $0[0] = 0x58 } == .badMagic)
        #expect(problem { $0[8] = 2; reseal(&$0) } == .unsupportedVersion(major: 2))
        #expect(problem { $0[12] = 0x04; reseal(&$0) } == .unknownIncompatFeatures(mask: 4))
        #expect(problem { $0[105] = 1; reseal(&$0) } == .reservedNotZero(offset: 105))
        #expect(problem { $0[4000] = 1 } == .reservedNotZero(offset: 4000))
        #expect(problem { $0[48] = 9; reseal(&$0) } == .fieldOutOfRange(field: "cipher"))
        #expect(problem { $0[96] = 0xff; $0[97] = 0x0f } == .fieldOutOfRange(field: "length"))
        #expect(problem { $0[16] = 0x01; reseal(&$0) } == nil)  // unknown ro_compat: readable
        var sb = sampleSuperblock()
        sb.roCompatFeatures = 1
        #expect(sb.requiresReadOnly)
    }

    @Test("random mutations and truncations never crash the decoder")
    func fuzz() {
        let good = try! sampleSuperblock().encodeSlot()
        var rng = SystemRandomNumberGenerator()
        for i in 0..<3000 {
            var slot = good
            if i % 3 == 0 { slot = Array(slot.prefix(Int.random(in: 0...4096, using: &rng))) }
            for _ in 0..<Int.random(in: 1...6, using: &rng) where !slot.isEmpty {
                slot[Int.random(in: 0..<slot.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if Bool.random(using: &rng) && slot.count == 4096 { reseal(&slot) }
            _ = try? Superblock.decodeSlot(slot)
        }
    }

    @Test("missing file and empty file")
    func missing() {
        #expect(throws: MetaStoreError.superblock(path: "/nonexistent/sb", problem: .missing)) { try SuperblockFile.read("/nonexistent/sb") }
        let path = tempPath("empty")
        _ = FileManager.default.createFile(atPath: path, contents: Data())
        #expect(throws: MetaStoreError.superblock(path: path, problem: .truncated(bytes: 0))) { try SuperblockFile.read(path) }
    }
}

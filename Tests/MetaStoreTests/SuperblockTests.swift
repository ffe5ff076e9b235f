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

    @Test("keyslots (feature 0x4): named whole and share slots round-trip; a v1.0 single wrap keeps the v1.0 layout; bad tables are refused")
    func keyslots() throws {
        let legacy = sampleSuperblock()
        #expect(!legacy.needsKeyslotTable)
        #expect(u32(try legacy.encodeSlot(), 12) & 0x4 == 0)
        let reference = { (type: String, key: String) in StoredKMSReference(type: type, address: "https://kms-\(key):8200", keyIdentifier: key, keyVersion: "1") }
        var sb = legacy
        sb.keyslots = [Keyslot(passkey: "vault-a", share: 1, kms: reference("vault", "a"), wrappedKey: Array(repeating: 0xA1, count: 180)),
                       Keyslot(passkey: "aws-b", share: 2, kms: reference("aws", "b"), wrappedKey: Array(repeating: 0xB2, count: 300)),
                       Keyslot(passkey: "vault-c", share: 3, kms: reference("vault", "c"), wrappedKey: Array(repeating: 0xC3, count: 180)),
                       Keyslot(passkey: "recovery", kms: reference("local", "recovery"), wrappedKey: Array(repeating: 0xD4, count: 220))]
        sb.threshold = 2
        let slot = try sb.encodeSlot()
        #expect(u32(slot, 12) & 0x4 != 0 && u16(slot, 96) == 0 && u16(slot, 98) == 0 && u16(slot, 100) > 0)
        let read = try Superblock.decodeSlot(slot)
        #expect(read.keyslots == sb.keyslots && read.threshold == 2 && read.incompatFeatures == sb.incompatFeatures)
        #expect(read.kms == sb.keyslots[0].kms)
        // Sixteen slots of a typical size fit; a seventeenth is refused, as is a table over 4096 bytes.
        var full = legacy
        full.keyslots = (0..<16).map { Keyslot(passkey: "p\($0)", kms: reference("vault", "k\($0)"), wrappedKey: Array(repeating: 1, count: 180)) }
        #expect(try Superblock.decodeSlot(try full.encodeSlot()).keyslots.count == 16)
        full.keyslots.append(full.keyslots[0])
        #expect(throws: MetaStoreError.self) { try full.encodeSlot() }
        full.keyslots = (0..<3).map { Keyslot(passkey: "p\($0)", kms: reference("aws", "k"), wrappedKey: Array(repeating: 1, count: 1400)) }
        #expect(throws: MetaStoreError.self) { try full.encodeSlot() }
        // Tables that lie: duplicate share coordinates, a threshold above the shares, shares without a threshold.
        // The encoder holds a table to the decoder's rules: nothing unreadable is ever written.
        for edit in [{ (s: inout Superblock) in s.keyslots[1].share = 1 }, { $0.threshold = 4 }, { $0.threshold = 0 }, { $0.threshold = 1 },
                     { $0.keyslots[0].passkey = "bad\nname" }, { $0.keyslots = [] }] {
            var bad = sb
            edit(&bad)
            #expect(throws: MetaStoreError.self) { try bad.encodeSlot() }
        }
        // The decoder refuses them too: a repeated share coordinate written by hand (checksum fixed).
        var twice = slot
        let first = try #require((112..<4000).first { twice[$0] == 1 && Array(twice[$0 - 7..<$0]) == Array("vault-a".utf8) })
        twice[first] = 2
        let end = 112 + Int(u16(twice, 100))
        twice.replaceSubrange(end..<end + 32, with: SHA256.hash(Array(twice[0..<end])))
        #expect(throws: MetaStoreError.SuperblockProblem.fieldOutOfRange(field: "keyslot shares")) { try Superblock.decodeSlot(twice) }
        // A flipped byte anywhere in the table fails the checksum.
        var flipped = slot
        flipped[112 + 40] ^= 1
        #expect(throws: MetaStoreError.SuperblockProblem.checksumMismatch) { try Superblock.decodeSlot(flipped) }
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
        #expect(problem { $0[12] = 0x08; reseal(&$0) } == .unknownIncompatFeatures(mask: 8))
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

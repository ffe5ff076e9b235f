import BlockCipher
import Foundation
import Testing

struct XTSVector: Decodable {
    let source: String
    let key: String
    let dataUnitSequenceNumber: UInt64
    let plaintext: String
    let ciphertext: String
}

private struct VectorFile: Decodable { let vectors: [XTSVector] }

func loadVectors() throws -> [XTSVector] {
    let url = try #require(Bundle.module.url(forResource: "ieee1619-xts-aes256", withExtension: "json", subdirectory: "Vectors"))
    return try JSONDecoder().decode(VectorFile.self, from: Data(contentsOf: url)).vectors
}

@Suite("AES-256-XTS against IEEE 1619")
struct XTSVectorTests {
    @Test("Annex B vectors 10-14 encrypt and decrypt exactly")
    func ieeeVectors() throws {
        let vectors = try loadVectors()
        #expect(vectors.count == 5)
        for vector in vectors {
            let key = SecretBytes(copying: try #require([UInt8](hexString: vector.key)))
            let plaintext = try #require([UInt8](hexString: vector.plaintext))
            let expected = try #require([UInt8](hexString: vector.ciphertext))
            // The vectors use 512-byte data units and the unit number alone as
            // the tweak: file id 0 puts zeros in tweak bytes 8-15.
            let cipher = try XTSCipher(key: key, unitSize: 512)
            let out = try cipher.encrypt(plaintext, fileID: FileID(0), firstBlock: BlockIndex(vector.dataUnitSequenceNumber))
            #expect(out == expected, "\(vector.source)")
            let back = try cipher.decrypt(expected, fileID: FileID(0), firstBlock: BlockIndex(vector.dataUnitSequenceNumber))
            #expect(back == plaintext, "\(vector.source)")
        }
    }

    @Test("a key with equal halves is refused (IEEE 1619 vector 1 key)")
    func equalHalvesRefused() throws {
        let key = SecretBytes(copying: [UInt8](repeating: 0, count: 64))
        #expect(throws: BlockCipherError.xtsKeyHalvesEqual) { try XTSCipher(key: key) }
    }

    @Test("wrong key length is refused")
    func badKeyLength() throws {
        #expect(throws: BlockCipherError.badKeyLength(expected: 64, actual: 32)) {
            try XTSCipher(key: SecretBytes(copying: [UInt8](repeating: 1, count: 32)))
        }
    }

    @Test("batched multi-unit calls equal per-unit calls, in place or not")
    func batchedEqualsPerUnit() throws {
        let cipher = try XTSCipher(key: SecretBytes.random(count: 64))
        let plaintext = try SecureRandom.bytes(4096 * 5)
        let batched = try cipher.encrypt(plaintext, fileID: FileID(42), firstBlock: BlockIndex(7))
        for unit in 0..<5 {
            let single = try cipher.encrypt(Array(plaintext[unit * 4096..<(unit + 1) * 4096]), fileID: FileID(42), firstBlock: BlockIndex(UInt64(7 + unit)))
            #expect(Array(batched[unit * 4096..<(unit + 1) * 4096]) == single)
        }
        var inPlace = plaintext
        try inPlace.withUnsafeMutableBytes { buffer in
            try cipher.encrypt(UnsafeRawBufferPointer(buffer), into: buffer, fileID: FileID(42), firstBlock: BlockIndex(7))
        }
        #expect(inPlace == batched)
        #expect(try cipher.decrypt(batched, fileID: FileID(42), firstBlock: BlockIndex(7)) == plaintext)
    }

    @Test("equal plaintext in two files, or two blocks, gives different ciphertext")
    func noTweakReuse() throws {
        let cipher = try XTSCipher(key: SecretBytes.random(count: 64))
        let block = [UInt8](repeating: 0x41, count: 4096)
        let a = try cipher.encrypt(block, fileID: FileID(1), firstBlock: BlockIndex(0))
        let b = try cipher.encrypt(block, fileID: FileID(2), firstBlock: BlockIndex(0))
        let c = try cipher.encrypt(block, fileID: FileID(1), firstBlock: BlockIndex(1))
        #expect(a != b)
        #expect(a != c)
        #expect(Set([a, b, c].map { $0.prefix(16) }).count == 3)
    }

    @Test("partial units are refused")
    func partialUnit() throws {
        let cipher = try XTSCipher(key: SecretBytes.random(count: 64))
        #expect(throws: BlockCipherError.self) { try cipher.encrypt([UInt8](repeating: 0, count: 100), fileID: FileID(1), firstBlock: BlockIndex(0)) }
    }

    @Test("concurrent use from many threads gives the same answers")
    func concurrency() async throws {
        let cipher = try XTSCipher(key: SecretBytes.random(count: 64))
        let plaintext = try SecureRandom.bytes(4096 * 4)
        let expected = try cipher.encrypt(plaintext, fileID: FileID(9), firstBlock: BlockIndex(3))
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 {
                group.addTask { try (0..<50).allSatisfy { _ in try cipher.encrypt(plaintext, fileID: FileID(9), firstBlock: BlockIndex(3)) == expected } }
            }
            for try await ok in group { #expect(ok) }
        }
    }
}

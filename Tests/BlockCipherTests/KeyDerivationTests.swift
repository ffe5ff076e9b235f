import BlockCipher
import Testing

@Suite("HKDF and the key hierarchy")
struct KeyDerivationTests {
    @Test("RFC 5869 test case 3 (HKDF-SHA256, empty salt and info)")
    func rfc5869() throws {
        let ikm = SecretBytes(copying: [UInt8](repeating: 0x0b, count: 22))
        let okm = try HKDF.deriveSHA256(secret: ikm, salt: [], info: "", length: 42)
        let expected = [UInt8](hexString: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8")!
        okm.withUnsafeBytes { #expect(Array($0) == expected) }
    }

    @Test("subkeys differ from each other and between masters")
    func subkeys() throws {
        let a = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
        let b = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
        #expect(a.keyCheckValue.count == 32)
        #expect(a.keyCheckValue != b.keyCheckValue)
        let block = [UInt8](repeating: 0, count: 4096)
        #expect(try a.data.encrypt(block, fileID: FileID(1), firstBlock: BlockIndex(0)) != b.data.encrypt(block, fileID: FileID(1), firstBlock: BlockIndex(0)))
    }

    @Test("the same master derives the same keys")
    func deterministic() throws {
        let raw = try SecureRandom.bytes(32)
        let a = try FilesystemKeys(masterSecret: SecretBytes(copying: raw))
        let b = try FilesystemKeys(masterSecret: SecretBytes(copying: raw))
        #expect(a.keyCheckValue == b.keyCheckValue)
        #expect(try a.names.seal([1, 2], associatedData: []) == b.names.seal([1, 2], associatedData: []))
    }

    @Test("a bound key-check value depends on the filesystem UUID; the unbound one keeps its old derivation")
    func boundKeyCheck() throws {
        let raw = try SecureRandom.bytes(32)
        let uuidA = try SecureRandom.bytes(16), uuidB = try SecureRandom.bytes(16)
        let a = try FilesystemKeys(masterSecret: SecretBytes(copying: raw), boundTo: uuidA)
        let b = try FilesystemKeys(masterSecret: SecretBytes(copying: raw), boundTo: uuidB)
        let unbound = try FilesystemKeys(masterSecret: SecretBytes(copying: raw))
        #expect(a.keyCheckValue != b.keyCheckValue, "the same master under another filesystem's UUID must fail the check")
        #expect(a.keyCheckValue != unbound.keyCheckValue)
        let legacy = try HKDF.deriveSHA256(secret: SecretBytes(copying: raw), salt: [], info: "kmsfs v1 key check value", length: 32)
        legacy.withUnsafeBytes { #expect(Array($0) == unbound.keyCheckValue, "superblocks made before the binding still check") }
        #expect(try a.names.seal([1], associatedData: []) == unbound.names.seal([1], associatedData: []), "only the check value changes")
    }

    @Test("SHA-256 of 'abc' (FIPS 180-2)")
    func sha256() {
        #expect(SHA256.hash(Array("abc".utf8)).hexString == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("secret bytes compare in constant time and are locked")
    func secretBytes() throws {
        let s = SecretBytes(copying: [1, 2, 3])
        #expect(s.constantTimeEquals([1, 2, 3]))
        #expect(!s.constantTimeEquals([1, 2, 4]))
        #expect(!s.constantTimeEquals([1, 2]))
    }
}

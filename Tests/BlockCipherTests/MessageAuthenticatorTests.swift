import BlockCipher
import Testing

@Suite("HMAC-SHA-256 (unit tags, entry and counter tags)")
struct MessageAuthenticatorTests {
    /// RFC 4231 test cases 1, 2, 6 and 7 (short keys, a key longer than the block, long data).
    @Test("RFC 4231 vectors", arguments: [
        ([UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ([UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ([UInt8](repeating: 0xaa, count: 131),
         Array("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".utf8),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ])
    func rfc4231(key: [UInt8], data: [UInt8], expected: String) throws {
        let mac = try MessageAuthenticator(key: SecretBytes(copying: key))
        #expect(try mac.authenticate([data]).hexString == expected)
        // Pooled contexts are re-armed, not re-keyed: the same answer again, and
        // for the message split in parts, and truncated to 16 bytes.
        #expect(try mac.authenticate([Array(data.prefix(3)), Array(data.dropFirst(3))]).hexString == expected)
        #expect(try mac.authenticate([data], length: 16).hexString == String(expected.prefix(32)))
    }

    @Test("integrity keys exist only with integrity, depend on the UUID, and change the key-check value")
    func integrityKeys() throws {
        let raw = [UInt8](repeating: 0x42, count: 32)
        let uuidA = [UInt8](repeating: 1, count: 16), uuidB = [UInt8](repeating: 2, count: 16)
        let plain = try FilesystemKeys(masterSecret: SecretBytes(copying: raw), boundTo: uuidA)
        let a = try FilesystemKeys(masterSecret: SecretBytes(copying: raw), boundTo: uuidA, integrity: true)
        let b = try FilesystemKeys(masterSecret: SecretBytes(copying: raw), boundTo: uuidB, integrity: true)
        #expect(plain.integrity == nil)
        #expect(plain.keyCheckValue != a.keyCheckValue, "clearing the integrity bit must fail the key check")
        let tagA = try #require(a.integrity).units.authenticate([[1, 2, 3]])
        let tagB = try #require(b.integrity).units.authenticate([[1, 2, 3]])
        #expect(tagA != tagB)
        #expect(try #require(a.integrity).metadata.authenticate([[1, 2, 3]]) != tagA)
        #expect(throws: (any Error).self) { try FilesystemKeys(masterSecret: SecretBytes(copying: raw), integrity: true) }
    }

    @Test("tags compare in constant time and by every byte")
    func equality() {
        #expect(MessageAuthenticator.equal([1, 2, 3], [1, 2, 3]))
        #expect(!MessageAuthenticator.equal([1, 2, 3], [1, 2, 4]))
        #expect(!MessageAuthenticator.equal([1, 2, 3], [1, 2]))
    }
}

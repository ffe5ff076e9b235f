import BlockCipher
import Testing

@Suite("AES-256-SIV name encryption")
struct NameCipherTests {
    let cipher: NameCipher

    init() throws {
        cipher = try NameCipher(key: SecretBytes.random(count: 64))
    }

    @Test("round trip, deterministic, and bound to the associated data")
    func roundTrip() throws {
        let name = Array("secret-report.txt".utf8)
        let a = try cipher.seal(name, associatedData: [1])
        #expect(a.count == name.count + NameCipher.overhead)
        #expect(try cipher.seal(name, associatedData: [1]) == a)
        #expect(try cipher.seal(name, associatedData: [2]) != a)
        #expect(try cipher.open(a, associatedData: [1]) == name)
        #expect(throws: BlockCipherError.authenticationFailed(what: "name")) { try cipher.open(a, associatedData: [2]) }
    }

    @Test("any flipped bit is detected")
    func tamper() throws {
        let sealed = try cipher.seal(Array("x".utf8), associatedData: [])
        for index in sealed.indices {
            var bad = sealed
            bad[index] ^= 0x01
            #expect(throws: BlockCipherError.self) { try cipher.open(bad, associatedData: []) }
        }
        #expect(throws: BlockCipherError.self) { try cipher.open([1, 2, 3], associatedData: []) }
    }

    @Test("empty plaintext is refused; short and long round-trip")
    func lengths() throws {
        #expect(throws: BlockCipherError.self) { try cipher.seal([], associatedData: []) }
        for length in [1, 15, 16, 17, 255, 4096] {
            let plain = [UInt8](repeating: 7, count: length)
            #expect(try cipher.open(cipher.seal(plain, associatedData: [9]), associatedData: [9]) == plain)
        }
    }

    @Test("different keys give different ciphertexts for the same name")
    func keyed() throws {
        let other = try NameCipher(key: SecretBytes.random(count: 64))
        let plain = Array("name".utf8)
        #expect(try other.seal(plain, associatedData: []) != cipher.seal(plain, associatedData: []))
        #expect(throws: BlockCipherError.self) { try other.open(cipher.seal(plain, associatedData: []), associatedData: []) }
    }
}

import Foundation
@testable import KeyVault
import Testing

private func material(_ bytes: [UInt8]) -> KeyMaterial { KeyMaterial(copying: bytes.withUnsafeBytes { $0 }) }
private func bytes(_ m: KeyMaterial) -> [UInt8] { m.withUnsafeBytes { Array($0) } }
private func hex(_ s: String) -> [UInt8] {
    var out = [UInt8]()
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        out.append(UInt8(s[i..<j], radix: 16)!)
        i = j
    }
    return out
}

@Suite("Passkey crypto: Shamir over GF(2^8), X25519 recovery wraps")
struct PasskeyCryptoTests {
    let secret: [UInt8] = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) }
    let context = WrapContext(filesystemUUID: Array(0..<16))

    @Test("GF(2^8) arithmetic matches FIPS-197 section 4.2 and inverts every non-zero element")
    func field() {
        #expect(Shamir.multiply(0x57, 0x83) == 0xc1)
        #expect(Shamir.multiply(0x57, 0x13) == 0xfe)
        #expect(Shamir.multiply(0x57, 0x02) == 0xae)
        #expect(Shamir.inverse(0x53) == 0xca)
        for a in 1...255 { #expect(Shamir.multiply(UInt8(a), Shamir.inverse(UInt8(a))) == 1) }
    }

    @Test("any M of N shares give the secret back; M-1 do not; a new share joins the same polynomial")
    func thresholds() throws {
        for (m, n) in [(2, 2), (2, 3), (3, 5), (4, 4)] {
            let shares = try Shamir.split(material(secret), threshold: m, xs: (1...n).map { UInt8($0) })
            // Every subset of size m.
            for mask in 1..<(1 << n) where mask.nonzeroBitCount == m {
                let subset = shares.indices.filter { mask & (1 << $0) != 0 }.map { shares[$0] }
                #expect(bytes(try Shamir.combine(subset)) == secret)
                #expect(bytes(try Shamir.combine(Array(subset.dropLast()))) != secret)
            }
            let joined = try Shamir.share(at: 200, from: Array(shares.prefix(m)))
            #expect(bytes(try Shamir.combine([joined] + shares.suffix(m - 1))) == secret)
        }
        #expect(throws: Shamir.Problem.self) { try Shamir.split(material(secret), threshold: 1, xs: [1, 2]) }
        #expect(throws: Shamir.Problem.self) { try Shamir.split(material(secret), threshold: 3, xs: [1, 2]) }
        #expect(throws: Shamir.Problem.self) { try Shamir.split(material(secret), threshold: 2, xs: [0, 2]) }
        #expect(throws: Shamir.Problem.self) { try Shamir.split(material(secret), threshold: 2, xs: [2, 2]) }
    }

    @Test("one share alone is uniform: its bytes do not follow the secret")
    func oneShareSaysNothing() throws {
        // The same secret byte split 4096 times: share x=1's byte must spread over all values.
        var counts = [Int](repeating: 0, count: 256)
        for _ in 0..<4096 {
            counts[Int(bytes(try Shamir.split(material([0x42]), threshold: 2, xs: [1, 2])[0].y)[0])] += 1
        }
        let chiSquare = counts.reduce(0.0) { $0 + pow(Double($1) - 16, 2) / 16 }
        #expect(chiSquare < 400, "chi-square \(chiSquare) over 255 degrees of freedom")
    }

    @Test("X25519 matches RFC 7748 section 6.1")
    func x25519Vectors() throws {
        let alice = material(hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = material(hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        #expect(try X25519.publicKey(of: alice) == hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
        let bobPublic = try X25519.publicKey(of: bob)
        #expect(bobPublic == hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"))
        #expect(bytes(try X25519.sharedSecret(alice, peer: bobPublic)) == hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"))
        // A small-order point gives an all-zero secret: refused.
        #expect(throws: KeyVaultError.self) { try X25519.sharedSecret(alice, peer: [UInt8](repeating: 0, count: 32)) }
    }

    @Test("a recovery wrap opens with the passphrase only, for its filesystem only, and not after tampering")
    func recoveryWraps() throws {
        let passphrase = material(Array("correct horse battery staple".utf8))
        let key = try RecoveryKey.derive(passphrase: passphrase)
        #expect(try key.matches(passphrase) && !(try key.matches(material(Array("wrong".utf8)))))
        let wrapped = try RecoveryKeyManager(source: .publicKey(key)).wrap(material(secret), context: context)
        #expect(!wrapped.encoded().contains(secret[0..<8]))
        let opener = RecoveryKeyManager(source: .passphrase(passphrase))
        #expect(bytes(try opener.unwrap(try WrappedKey(decoding: wrapped.encoded()), context: context)) == secret)
        #expect(throws: KeyVaultError.self) { try RecoveryKeyManager(source: .passphrase(material(Array("wrong".utf8)))).unwrap(wrapped, context: context) }
        #expect(throws: KeyVaultError.self) { try opener.unwrap(wrapped, context: WrapContext(filesystemUUID: [UInt8](repeating: 9, count: 16))) }
        #expect(throws: KeyVaultError.passphraseRequired) { try RecoveryKeyManager(source: .publicKey(key)).unwrap(wrapped, context: context) }
        for field in ["epk", "nonce"] {
            var forged = wrapped
            forged.parameters[field]![0] ^= 1
            #expect(throws: KeyVaultError.self) { try opener.unwrap(forged, context: context) }
        }
        var forged = wrapped
        forged.ciphertext[3] ^= 0x80
        #expect(throws: KeyVaultError.self) { try opener.unwrap(forged, context: context) }
        // Two wraps of the same secret share nothing but the recipient's public key.
        let again = try RecoveryKeyManager(source: .publicKey(key)).wrap(material(secret), context: context)
        #expect(again.ciphertext != wrapped.ciphertext && again.parameters["epk"] != wrapped.parameters["epk"])
    }
}

internal import COpenSSL

/// scrypt (RFC 7914) through OpenSSL's EVP_PBE_scrypt, to turn a passphrase
/// into a key-encryption key. Costs are stored in the envelope and bounded on
/// read so a hostile envelope cannot demand gigabytes.
struct ScryptParameters: Equatable {
    var logN: UInt8
    var r: UInt8
    var p: UInt8

    /// N = 2^16, r = 8, p = 1: 64 MiB and about 0.2 s on this class of machine.
    static let standard = ScryptParameters(logN: 16, r: 8, p: 1)
    /// Upper bounds accepted from an envelope (1 GiB of memory).
    static let maxLogN: UInt8 = 20

    var isAcceptable: Bool { logN >= 10 && logN <= Self.maxLogN && r >= 1 && r <= 16 && p >= 1 && p <= 4 }

    func deriveKey(passphrase: KeyMaterial, salt: [UInt8]) throws -> KeyMaterial {
        var out = [UInt8](repeating: 0, count: 32)
        let n = UInt64(1) << UInt64(logN)
        let maxMemory = UInt64(r) * 128 * n * 2 + 1 << 20
        let ok = passphrase.withUnsafeBytes { pw in
            EVP_PBE_scrypt(pw.baseAddress?.assumingMemoryBound(to: CChar.self), pw.count, salt, salt.count,
                           n, UInt64(r), UInt64(p), maxMemory, &out, out.count)
        }
        guard ok == 1 else {
            OPENSSL_cleanse(&out, out.count)
            throw KeyVaultError.crypto(operation: "EVP_PBE_scrypt")
        }
        return KeyMaterial(consuming: &out)
    }
}

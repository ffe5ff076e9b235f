internal import COpenSSL

/// scrypt (RFC 7914) through OpenSSL's EVP_PBE_scrypt, to turn a passphrase
/// into a key-encryption key. Costs are stored in the envelope and bounded on
/// read so a hostile envelope cannot demand gigabytes.
struct ScryptParameters: Equatable {
    var logN: UInt8
    var r: UInt8
    var p: UInt8

    /// N = 2^17, r = 8, p = 1 (128 MiB, about 0.4 s here): current guidance
    /// (OWASP 2023) asks for at least N = 2^17 with r = 8. Envelopes made with
    /// the earlier N = 2^16 still open: their cost is read from the envelope.
    static let standard = ScryptParameters(logN: 17, r: 8, p: 1)
    static let maxLogN: UInt8 = 20
    /// The most memory an envelope may demand: 128·r·N bytes, at most 1 GiB.
    static let maxMemoryBytes: UInt64 = 1 << 30

    /// The memory the derivation needs (scrypt's V array, 128·r·N bytes).
    var memoryBytes: UInt64 { 128 * UInt64(r) << UInt64(logN) }

    var isAcceptable: Bool {
        logN >= 10 && logN <= Self.maxLogN && r >= 1 && r <= 16 && p >= 1 && p <= 4 && memoryBytes <= Self.maxMemoryBytes
    }

    func deriveKey(passphrase: KeyMaterial, salt: [UInt8]) throws -> KeyMaterial {
        var out = [UInt8](repeating: 0, count: 32)
        let n = UInt64(1) << UInt64(logN)
        // OpenSSL counts V plus its small B and XY buffers: allow those on top.
        let maxMemory = memoryBytes + 128 * UInt64(r) * (UInt64(p) + 2) + (1 << 20)
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

internal import COpenSSL

/// Non-secret random values (nonces, salts, ids) from OpenSSL's CSPRNG (RAND_bytes).
public enum SecureRandom {
    /// Returns `count` random bytes.
    public static func bytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard count == 0 || RAND_bytes(&out, Int32(count)) == 1 else { throw BlockCipherError.randomFailed }
        return out
    }

    /// Returns a random UInt64.
    public static func uint64() throws -> UInt64 {
        try bytes(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}

internal import COpenSSL

/// Shamir's secret sharing over GF(2^8), byte by byte (docs/FORMAT.md
/// "Keyslots"): a threshold-M split of a secret into shares at distinct
/// non-zero x coordinates, any M of which give the secret back and fewer of
/// which say nothing about it. The field is AES's (x^8 + x^4 + x^3 + x + 1);
/// multiplication runs without tables or secret-dependent branches, so the
/// time it takes does not depend on the bytes.
public enum Shamir {
    /// One share: its x coordinate (1...255) and one y byte per secret byte.
    public struct Share: Sendable {
        public let x: UInt8
        public let y: KeyMaterial

        public init(x: UInt8, y: KeyMaterial) {
            self.x = x
            self.y = y
        }
    }

    public enum Problem: Error, Equatable {
        case threshold(Int, shares: Int)
        case coordinate
        case lengths
    }

    /// Splits `secret` so that any `threshold` of the shares at `xs` rebuild it.
    public static func split(_ secret: KeyMaterial, threshold: Int, xs: [UInt8]) throws -> [Share] {
        guard threshold >= 2, threshold <= xs.count else { throw Problem.threshold(threshold, shares: xs.count) }
        guard !xs.contains(0), Set(xs).count == xs.count else { throw Problem.coordinate }
        // Coefficients 1...M-1 of one random polynomial per byte; coefficient 0 is the secret byte.
        var coefficients = try AESGCM.randomBytes(secret.count * (threshold - 1))
        defer { wipe(&coefficients) }
        return secret.withUnsafeBytes { s in
            xs.map { x in
                var y = [UInt8](repeating: 0, count: s.count)
                for i in 0..<s.count {
                    // Horner's rule from the highest coefficient down.
                    var acc: UInt8 = 0
                    for k in stride(from: threshold - 2, through: 0, by: -1) {
                        acc = multiply(acc, x) ^ coefficients[i * (threshold - 1) + k]
                    }
                    y[i] = multiply(acc, x) ^ s[i]
                }
                return Share(x: x, y: KeyMaterial(consuming: &y))
            }
        }
    }

    /// The secret behind `shares` (all of them are used: give exactly the threshold, or more of one polynomial).
    public static func combine(_ shares: [Share]) throws -> KeyMaterial {
        try interpolate(shares, at: 0)
    }

    /// A new share at `x` of the polynomial behind `shares` (at least the
    /// threshold of them): how a passkey joins without the others changing.
    public static func share(at x: UInt8, from shares: [Share]) throws -> Share {
        guard x != 0, !shares.contains(where: { $0.x == x }) else { throw Problem.coordinate }
        return Share(x: x, y: try interpolate(shares, at: x))
    }

    /// Lagrange interpolation at `t`; in GF(2^8) subtraction is XOR.
    private static func interpolate(_ shares: [Share], at t: UInt8) throws -> KeyMaterial {
        guard let count = shares.first?.y.count, shares.allSatisfy({ $0.y.count == count }) else { throw Problem.lengths }
        let xs = shares.map(\.x)
        guard !xs.contains(0), Set(xs).count == xs.count else { throw Problem.coordinate }
        var out = [UInt8](repeating: 0, count: count)
        for (j, share) in shares.enumerated() {
            var numerator: UInt8 = 1, denominator: UInt8 = 1
            for (k, xk) in xs.enumerated() where k != j {
                numerator = multiply(numerator, t ^ xk)
                denominator = multiply(denominator, xs[j] ^ xk)
            }
            let basis = multiply(numerator, inverse(denominator))
            share.y.withUnsafeBytes { y in
                for i in 0..<count { out[i] ^= multiply(y[i], basis) }
            }
        }
        return KeyMaterial(consuming: &out)
    }

    /// Product in GF(2^8): shift-and-add with masks instead of branches.
    static func multiply(_ a: UInt8, _ b: UInt8) -> UInt8 {
        var a = a, b = b, product: UInt8 = 0
        for _ in 0..<8 {
            product ^= a & (0 &- (b & 1))
            let carry = 0 &- (a >> 7)
            a = (a << 1) ^ (0x1b & carry)
            b >>= 1
        }
        return product
    }

    /// a^254 = a^-1 for a != 0 (and 0 for 0), by square-and-multiply over a fixed exponent.
    static func inverse(_ a: UInt8) -> UInt8 {
        var result: UInt8 = 1, base = a
        var exponent = 254
        while exponent > 0 {
            if exponent & 1 == 1 { result = multiply(result, base) }
            base = multiply(base, base)
            exponent >>= 1
        }
        return result
    }
}

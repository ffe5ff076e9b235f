/// Errors of the BlockCipher module. Messages never carry key bytes or plaintext.
public enum BlockCipherError: Error, CustomStringConvertible, Equatable, Sendable {
    /// OpenSSL refused an operation; `operation` names the EVP call.
    case openSSL(operation: String, detail: String)
    /// A key of the wrong length was supplied.
    case badKeyLength(expected: Int, actual: Int)
    /// The two halves of an XTS key are equal, which IEEE 1619 forbids.
    case xtsKeyHalvesEqual
    /// A data unit had a length that is not the configured unit size.
    case badUnitLength(expected: Int, actual: Int)
    /// Authenticated decryption failed (wrong key, or the ciphertext was altered).
    case authenticationFailed(what: String)
    /// The system random generator failed.
    case randomFailed

    public var description: String {
        switch self {
        case .openSSL(let op, let detail): return "OpenSSL \(op) failed: \(detail)"
        case .badKeyLength(let e, let a): return "key has \(a) bytes, expected \(e)"
        case .xtsKeyHalvesEqual: return "XTS key halves are equal (IEEE 1619 forbids this)"
        case .badUnitLength(let e, let a): return "data unit has \(a) bytes, expected \(e)"
        case .authenticationFailed(let what): return "authentication of \(what) failed: wrong key or altered data"
        case .randomFailed: return "the system random generator failed"
        }
    }
}

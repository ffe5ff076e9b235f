/// Errors of the KeyVault module. Cases name the provider, key id or path,
/// never key bytes, tokens or passphrases.
public enum KeyVaultError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The KMS or key file refused to unwrap: wrong key, wrong passphrase, or altered ciphertext.
    case unwrapDenied(provider: String, keyID: String)
    /// The local key file is missing or unreadable.
    case keyFileUnavailable(path: String, reason: String)
    /// The wrapped key was made by another kind of KMS than the one asked to unwrap it.
    case providerMismatch(envelope: String, configured: String)
    /// A passphrase is needed (the key was wrapped with one) but none was given.
    case passphraseRequired
    /// The wrapped-key envelope is malformed or of an unknown version.
    case malformedEnvelope(reason: String)
    /// The KMS cannot be reached.
    case unreachable(provider: String, address: String, reason: String)
    /// The KMS answered with an error.
    case kmsError(provider: String, reason: String)
    /// A crypto primitive failed.
    case crypto(operation: String)
    /// The operation is not offered by this provider.
    case unsupported(provider: String, operation: String)
    /// The TLS handshake failed (untrusted or wrong certificate).
    case tls(provider: String, address: String, reason: String)
    /// The KMS rejected the credentials (expired or revoked token, bad client certificate).
    case credentialsRejected(provider: String, reason: String)
    /// The credentials are valid but not allowed to do this.
    case permissionDenied(provider: String, operation: String, reason: String)
    /// The KMS has no such key.
    case keyNotFound(provider: String, key: String, reason: String)
    /// The key exists but its state forbids its use (disabled, pending deletion).
    case keyNotUsable(provider: String, key: String, reason: String)
    /// A KMIP message that does not parse.
    case malformedKMIP(reason: String)

    public var description: String {
        switch self {
        case .unwrapDenied(let p, let k): return "\(p) refused to unwrap the filesystem key with key '\(k)': wrong key or passphrase, or the wrapped key was altered"
        case .keyFileUnavailable(let path, let r): return "local key file \(path) is unavailable: \(r)"
        case .providerMismatch(let e, let c): return "the filesystem key is wrapped by \(e), but the configured KMS is \(c)"
        case .passphraseRequired: return "this filesystem key is protected by a passphrase; give --passphrase-file or KMSFS_PASSPHRASE"
        case .malformedEnvelope(let r): return "wrapped key is malformed: \(r)"
        case .unreachable(let p, let a, let r): return "\(p) at \(a) is unreachable: \(r)"
        case .kmsError(let p, let r): return "\(p): \(r)"
        case .crypto(let op): return "crypto operation \(op) failed"
        case .unsupported(let p, let op): return "\(p) does not support \(op)"
        case .tls(let p, let a, let r): return "TLS handshake with \(p) at \(a) failed: \(r)"
        case .credentialsRejected(let p, let r): return "\(p) rejected the credentials: \(r)"
        case .permissionDenied(let p, let op, let r): return "\(p) denied \(op): \(r)"
        case .keyNotFound(let p, let k, let r): return "\(p) has no key '\(k)': \(r)"
        case .keyNotUsable(let p, let k, let r): return "\(p) key \(k) cannot be used: \(r)"
        case .malformedKMIP(let r): return "malformed KMIP message: \(r)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The embedded default KMS: the filesystem key is wrapped with AES-256-GCM
/// under either a random 256-bit key file in the kmsfs home (mode 0600) or a
/// key derived from a passphrase with scrypt. The wrap is bound to the
/// filesystem UUID as associated data.
public struct LocalKeyManager: KeyManager {
    /// Where the key-encryption key comes from.
    public enum Source: Sendable {
        /// A 32-byte key file; created on first use when `create` is true.
        case keyFile(path: String)
        /// A passphrase (already read from a file or the environment).
        case passphrase(KeyMaterial)
    }

    /// Size of the key file in bytes.
    public static let keyFileByteCount = 32
    private let source: Source

    public init(source: Source) {
        self.source = source
    }

    public var reference: KMSReference {
        switch source {
        case .keyFile(let path): return KMSReference(type: .local, address: path, keyIdentifier: "keyfile")
        case .passphrase: return KMSReference(type: .local, address: "", keyIdentifier: "passphrase")
        }
    }

    public func wrap(_ secret: KeyMaterial, context: WrapContext) throws -> WrappedKey {
        let nonce = try AESGCM.randomBytes(AESGCM.nonceByteCount)
        var parameters: [String: [UInt8]] = ["nonce": nonce]
        let kek: KeyMaterial
        switch source {
        case .keyFile(let path):
            kek = try Self.loadKeyFile(path)
        case .passphrase(let passphrase):
            let salt = try AESGCM.randomBytes(16)
            let cost = ScryptParameters.standard
            kek = try cost.deriveKey(passphrase: passphrase, salt: salt)
            parameters["salt"] = salt
            parameters["scrypt"] = [cost.logN, cost.r, cost.p]
        }
        let sealed = try AESGCM.seal(key: kek, nonce: nonce, plaintext: secret, associatedData: context.associatedData)
        return WrappedKey(provider: .local, keyIdentifier: reference.keyIdentifier, ciphertext: sealed, parameters: parameters)
    }

    public func unwrap(_ wrapped: WrappedKey, context: WrapContext) throws -> KeyMaterial {
        guard wrapped.provider == .local else {
            throw KeyVaultError.providerMismatch(envelope: wrapped.provider.rawValue, configured: "local")
        }
        guard let nonce = wrapped.parameters["nonce"] else { throw KeyVaultError.malformedEnvelope(reason: "local envelope has no nonce") }
        let kek: KeyMaterial
        switch (source, wrapped.keyIdentifier) {
        case (.keyFile(let path), "keyfile"):
            kek = try Self.loadKeyFile(path)
        case (.passphrase(let passphrase), "passphrase"):
            guard let salt = wrapped.parameters["salt"], let raw = wrapped.parameters["scrypt"], raw.count == 3 else {
                throw KeyVaultError.malformedEnvelope(reason: "passphrase envelope lacks its scrypt parameters")
            }
            let cost = ScryptParameters(logN: raw[0], r: raw[1], p: raw[2])
            guard cost.isAcceptable else { throw KeyVaultError.malformedEnvelope(reason: "scrypt cost out of bounds") }
            kek = try cost.deriveKey(passphrase: passphrase, salt: salt)
        case (.keyFile, "passphrase"):
            throw KeyVaultError.passphraseRequired
        default:
            throw KeyVaultError.unwrapDenied(provider: "local", keyID: wrapped.keyIdentifier)
        }
        guard let secret = AESGCM.open(key: kek, nonce: nonce, sealed: wrapped.ciphertext, associatedData: context.associatedData) else {
            throw KeyVaultError.unwrapDenied(provider: "local", keyID: wrapped.keyIdentifier)
        }
        return secret
    }

    public func rewrap(_ wrapped: WrappedKey, context: WrapContext, newKeyIdentifier: String?) throws -> WrappedKey {
        guard newKeyIdentifier == nil else { throw KeyVaultError.unsupported(provider: "local", operation: "--new-key-uid") }
        return try wrap(unwrap(wrapped, context: context), context: context)
    }

    public func health() throws -> KMSHealth {
        switch source {
        case .keyFile(let path):
            _ = try Self.loadKeyFile(path)
            return KMSHealth(reachable: true, details: ["key file": path])
        case .passphrase:
            return KMSHealth(reachable: true, details: ["passphrase": "given"])
        }
    }

    /// Creates a new random key file with mode 0600; refuses to overwrite one.
    public static func createKeyFile(_ path: String) throws {
        var key = try AESGCM.randomBytes(keyFileByteCount)
        defer { wipe(&key) }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KeyVaultError.keyFileUnavailable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let written = key.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == keyFileByteCount, fsync(fd) == 0 else {
            unlink(path)
            throw KeyVaultError.keyFileUnavailable(path: path, reason: "could not write the key file")
        }
    }

    /// Reads the key file, refusing one that others can read (as ssh does).
    static func loadKeyFile(_ path: String) throws -> KeyMaterial {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw KeyVaultError.keyFileUnavailable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw KeyVaultError.keyFileUnavailable(path: path, reason: "fstat failed") }
        guard info.st_mode & 0o077 == 0 else {
            throw KeyVaultError.keyFileUnavailable(path: path, reason: "mode \(String(info.st_mode & 0o777, radix: 8)) lets others read it; chmod 600 it")
        }
        var key = [UInt8](repeating: 0, count: keyFileByteCount + 1)
        let count = key.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count == keyFileByteCount else {
            wipe(&key)
            throw KeyVaultError.keyFileUnavailable(path: path, reason: "expected \(keyFileByteCount) bytes")
        }
        key.removeLast()
        return KeyMaterial(consuming: &key)
    }
}

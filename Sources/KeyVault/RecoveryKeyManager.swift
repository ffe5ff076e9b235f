internal import COpenSSL

/// The public half of a recovery passkey: an X25519 key whose private half
/// is scrypt(passphrase, salt). The home keeps only this, so every new
/// filesystem and every rewrap gets a recovery wrap without the passphrase
/// being typed, stored or held by the daemon (docs/FORMAT.md "Recovery wraps").
public struct RecoveryKey: Sendable, Equatable, Codable {
    public var publicKey: [UInt8]
    public var salt: [UInt8]
    /// scrypt log2(N), r, p.
    public var scrypt: [UInt8]

    /// A new recovery key for `passphrase`, with a fresh salt.
    public static func derive(passphrase: KeyMaterial) throws -> RecoveryKey {
        let salt = try AESGCM.randomBytes(16)
        let cost = ScryptParameters.standard
        let privateKey = try cost.deriveKey(passphrase: passphrase, salt: salt)
        return RecoveryKey(publicKey: try X25519.publicKey(of: privateKey), salt: salt, scrypt: [cost.logN, cost.r, cost.p])
    }

    /// Whether `passphrase` is this key's.
    public func matches(_ passphrase: KeyMaterial) throws -> Bool {
        try RecoveryKeyManager.privateKey(passphrase: passphrase, salt: salt, scrypt: scrypt).publicKey == publicKey
    }

    /// Eight hex digits of SHA-256 of the public key, as `passkey` lists it.
    public var fingerprint: String {
        RecoveryKeyManager.sha256(publicKey).prefix(4).map { String($0, radix: 16).leftPadded(2) }.joined()
    }
}

/// Wraps filesystem keys to a recovery key (ephemeral-static X25519, then
/// AES-256-GCM bound to the filesystem UUID) and unwraps them with the passphrase.
public struct RecoveryKeyManager: KeyManager {
    public enum Source: Sendable {
        /// Wraps only.
        case publicKey(RecoveryKey)
        /// Unwraps envelopes of any recovery key, deriving (scrypt) from each envelope's own salt and cost.
        case passphrase(KeyMaterial)
        /// Unwraps envelopes of this recovery key only, with its private key derived once
        /// (`opener`): an envelope naming another key or cost is refused before any scrypt.
        case derived(RecoveryKey, privateKey: KeyMaterial)
    }

    /// An unwrapper for `key`'s envelopes: scrypt runs once, here; a wrong passphrase is refused here.
    public static func opener(for key: RecoveryKey, passphrase: KeyMaterial) throws -> RecoveryKeyManager {
        let derived = try privateKey(passphrase: passphrase, salt: key.salt, scrypt: key.scrypt)
        guard derived.publicKey == key.publicKey else { throw KeyVaultError.unwrapDenied(provider: "recovery", keyID: "passphrase") }
        return RecoveryKeyManager(source: .derived(key, privateKey: derived.privateKey))
    }

    public static let keyIdentifier = "recovery"
    private static let domain = Array("kmsfs-recovery-wrap-v1".utf8)
    private let source: Source

    public init(source: Source) { self.source = source }

    public var reference: KMSReference { KMSReference(type: .local, address: "", keyIdentifier: Self.keyIdentifier) }

    public func wrap(_ secret: KeyMaterial, context: WrapContext) throws -> WrappedKey {
        let recipient: RecoveryKey
        switch source {
        case .publicKey(let key), .derived(let key, _): recipient = key
        case .passphrase: throw KeyVaultError.unsupported(provider: "recovery", operation: "wrapping without the recovery public key")
        }
        let ephemeralPrivate = try KeyMaterial(consumingRandom: X25519.keyByteCount)
        let ephemeralPublic = try X25519.publicKey(of: ephemeralPrivate)
        let kek = try Self.keyEncryptionKey(shared: X25519.sharedSecret(ephemeralPrivate, peer: recipient.publicKey),
                                            ephemeral: ephemeralPublic, recipient: recipient.publicKey)
        let nonce = try AESGCM.randomBytes(AESGCM.nonceByteCount)
        let sealed = try AESGCM.seal(key: kek, nonce: nonce, plaintext: secret, associatedData: context.associatedData)
        return WrappedKey(provider: .local, keyIdentifier: Self.keyIdentifier, ciphertext: sealed,
                          parameters: ["epk": ephemeralPublic, "nonce": nonce, "pk": recipient.publicKey, "salt": recipient.salt, "scrypt": recipient.scrypt])
    }

    public func unwrap(_ wrapped: WrappedKey, context: WrapContext) throws -> KeyMaterial {
        guard wrapped.provider == .local, wrapped.keyIdentifier == Self.keyIdentifier else {
            throw KeyVaultError.providerMismatch(envelope: "\(wrapped.provider.rawValue) key '\(wrapped.keyIdentifier)'", configured: "a recovery passkey")
        }
        guard let ephemeral = wrapped.parameters["epk"], let nonce = wrapped.parameters["nonce"], let recipient = wrapped.parameters["pk"],
              let salt = wrapped.parameters["salt"], let scrypt = wrapped.parameters["scrypt"]
        else { throw KeyVaultError.malformedEnvelope(reason: "recovery envelope lacks its parameters") }
        let derived: (privateKey: KeyMaterial, publicKey: [UInt8])
        switch source {
        case .publicKey: throw KeyVaultError.passphraseRequired
        case .derived(let key, let privateKey):
            guard key.publicKey == recipient, key.salt == salt, key.scrypt == scrypt else {
                throw KeyVaultError.unwrapDenied(provider: "recovery", keyID: "passphrase (the envelope names another recovery key)")
            }
            derived = (privateKey, key.publicKey)
        case .passphrase(let passphrase):
            derived = try Self.privateKey(passphrase: passphrase, salt: salt, scrypt: scrypt)
        }
        // A wrong passphrase derives another public key: say so before any agreement.
        guard derived.publicKey == recipient else { throw KeyVaultError.unwrapDenied(provider: "recovery", keyID: "passphrase") }
        let kek = try Self.keyEncryptionKey(shared: X25519.sharedSecret(derived.privateKey, peer: ephemeral), ephemeral: ephemeral, recipient: recipient)
        guard let secret = AESGCM.open(key: kek, nonce: nonce, sealed: wrapped.ciphertext, associatedData: context.associatedData) else {
            throw KeyVaultError.unwrapDenied(provider: "recovery", keyID: "passphrase")
        }
        return secret
    }

    public func rewrap(_ wrapped: WrappedKey, context: WrapContext, newKeyIdentifier: String?) throws -> WrappedKey {
        throw KeyVaultError.unsupported(provider: "recovery", operation: "rewrap")
    }

    public func health() throws -> KMSHealth { KMSHealth(reachable: true, details: ["recovery": "offline passphrase"]) }

    static func privateKey(passphrase: KeyMaterial, salt: [UInt8], scrypt: [UInt8]) throws -> (privateKey: KeyMaterial, publicKey: [UInt8]) {
        guard scrypt.count == 3, salt.count == 16 else { throw KeyVaultError.malformedEnvelope(reason: "recovery scrypt parameters") }
        let cost = ScryptParameters(logN: scrypt[0], r: scrypt[1], p: scrypt[2])
        guard cost.isAcceptable else { throw KeyVaultError.malformedEnvelope(reason: "scrypt cost out of bounds") }
        let privateKey = try cost.deriveKey(passphrase: passphrase, salt: salt)
        return (privateKey, try X25519.publicKey(of: privateKey))
    }

    /// SHA-256(domain ‖ shared ‖ ephemeral ‖ recipient): both public keys bound in, as ECIES-KEM does.
    /// The shared secret is fed from its locked buffer, never copied.
    private static func keyEncryptionKey(shared: KeyMaterial, ephemeral: [UInt8], recipient: [UInt8]) throws -> KeyMaterial {
        var digest = digest { ctx in
            EVP_DigestUpdate(ctx, domain, domain.count) == 1
                && shared.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) } == 1
                && EVP_DigestUpdate(ctx, ephemeral, ephemeral.count) == 1 && EVP_DigestUpdate(ctx, recipient, recipient.count) == 1
        }
        return KeyMaterial(consuming: &digest)
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] { digest { EVP_DigestUpdate($0, bytes, bytes.count) == 1 } }

    private static func digest(_ feed: (OpaquePointer) -> Bool) -> [UInt8] {
        guard let ctx = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new failed") }
        defer { EVP_MD_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        guard EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1, feed(ctx), EVP_DigestFinal_ex(ctx, &out, &length) == 1 else {
            preconditionFailure("SHA-256 failed")
        }
        return out
    }
}

extension KeyMaterial {
    /// `count` random bytes.
    convenience init(consumingRandom count: Int) throws {
        var bytes = try AESGCM.randomBytes(count)
        self.init(consuming: &bytes)
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

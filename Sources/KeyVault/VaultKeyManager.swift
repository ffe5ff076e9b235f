import Foundation
import HTTPTransport
internal import COpenSSL

/// Vault / OpenBao transit as the KMS. The filesystem secret is sent to
/// transit/encrypt/<key> prefixed with the filesystem UUID, so the transit
/// ciphertext (AES-GCM, authenticated by Vault) is bound to one filesystem:
/// unwrap checks the UUID that comes back. Unlike Vault's associated_data,
/// this binding survives transit/rewrap, which takes no associated data.
public struct VaultKeyManager: KeyManager {
    private let client: VaultClient
    public var settings: VaultSettings { client.settings }

    public init(settings: VaultSettings) {
        client = VaultClient(settings: settings)
    }

    public var reference: KMSReference {
        KMSReference(type: .vault, address: settings.address, keyIdentifier: settings.keyName)
    }

    private var encryptPath: String { "\(settings.transitMount)/encrypt/\(settings.keyName)" }
    private var decryptPath: String { "\(settings.transitMount)/decrypt/\(settings.keyName)" }
    private var rewrapPath: String { "\(settings.transitMount)/rewrap/\(settings.keyName)" }

    public func wrap(_ secret: KeyMaterial, context: WrapContext) throws -> WrappedKey {
        var payload = context.filesystemUUID
        secret.withUnsafeBytes { payload.append(contentsOf: $0) }
        var encoded = Base64.encode(payload)
        var body = Array(#"{"plaintext":""#.utf8) + encoded + Array(#""}"#.utf8)
        defer { wipe(&payload); wipe(&encoded); wipe(&body) }
        let response = try client.call("POST", encryptPath, body: body, capability: "update")
        return try Self.envelope(from: response, keyName: settings.keyName)
    }

    public func unwrap(_ wrapped: WrappedKey, context: WrapContext) throws -> KeyMaterial {
        try checkOwnership(wrapped)
        let body = try ciphertextBody(wrapped)
        var response = try client.call("POST", decryptPath, body: body, capability: "update")
        defer { response.wipeBody() }
        guard let field = JSONSecretField.value(named: "plaintext", in: response.body), var payload = Base64.decode(field) else {
            throw KeyVaultError.kmsError(provider: "vault", reason: "decrypt answer has no plaintext")
        }
        defer { wipe(&payload) }
        let uuidCount = context.filesystemUUID.count
        guard payload.count > uuidCount,
              CRYPTO_memcmp(payload, context.filesystemUUID, uuidCount) == 0 else {
            throw KeyVaultError.unwrapDenied(provider: "vault", keyID: settings.keyName)
        }
        return payload.withUnsafeBytes { KeyMaterial(copying: UnsafeRawBufferPointer(rebasing: $0[uuidCount...])) }
    }

    /// Server-side rewrap to the key's latest version: the plaintext never leaves Vault.
    public func rewrap(_ wrapped: WrappedKey, context: WrapContext, newKeyIdentifier: String?) throws -> WrappedKey {
        if newKeyIdentifier != nil {
            throw KeyVaultError.unsupported(provider: "vault", operation: "--new-key-uid (vault rewraps to the latest version of the same key after 'transit/keys/<key>/rotate'; --new-key-uid is for kmip)")
        }
        try checkOwnership(wrapped)
        let response = try client.call("POST", rewrapPath, body: ciphertextBody(wrapped), capability: "update")
        return try Self.envelope(from: response, keyName: settings.keyName)
    }

    public func health() throws -> KMSHealth {
        let token = try client.lookupSelf()
        let key = try client.keyInfo()
        var details: [String: String] = [
            "key type": key.type,
            "key latest version": String(key.latestVersion),
            "key min decryption version": String(key.minDecryptionVersion),
            "token accessor": token.accessor,
            "token policies": token.policies.joined(separator: ","),
            "token ttl seconds": String(token.ttl),
            "token renewable": String(token.renewable),
        ]
        if let ns = settings.namespace, !ns.isEmpty { details["namespace"] = ns }
        return KMSHealth(reachable: true, details: details)
    }

    /// Everything `kms set` proves before saving: the token is valid, the key
    /// exists and can encrypt and decrypt, and a wrap/unwrap round trip works.
    public func validate() throws -> (VaultTokenInfo, VaultKeyInfo) {
        let token = try client.lookupSelf()
        let key = try client.keyInfo()
        guard key.supportsEncryption, key.supportsDecryption else {
            throw KeyVaultError.kmsError(provider: "vault", reason: "transit key '\(settings.keyName)' of type \(key.type) cannot encrypt and decrypt; create it as aes256-gcm96")
        }
        try roundTripCheck()
        return (token, key)
    }

    public func tokenInfo() throws -> VaultTokenInfo { try client.lookupSelf() }

    /// Rollback anchors in the KV version 2 engine at `mount`, with this token.
    public func anchorStore(mount: String) -> VaultAnchorStore { VaultAnchorStore(client: client, mount: mount) }

    /// Renews the token; returns its TTL in seconds afterwards.
    public func renewToken() throws -> Int { try client.renewSelf() }

    private func checkOwnership(_ wrapped: WrappedKey) throws {
        guard wrapped.provider == .vault else {
            throw KeyVaultError.providerMismatch(envelope: wrapped.provider.rawValue, configured: "vault")
        }
        guard wrapped.keyIdentifier == settings.keyName else {
            throw KeyVaultError.kmsError(provider: "vault", reason: "this filesystem key is wrapped by transit key '\(wrapped.keyIdentifier)', but the configured key is '\(settings.keyName)'")
        }
    }

    private func ciphertextBody(_ wrapped: WrappedKey) throws -> [UInt8] {
        guard let text = String(validating: wrapped.ciphertext, as: UTF8.self), text.hasPrefix("vault:v"),
              !text.contains("\""), !text.contains("\\") else {
            throw KeyVaultError.malformedEnvelope(reason: "vault ciphertext is not of the form vault:vN:...")
        }
        return Array(#"{"ciphertext":""#.utf8) + wrapped.ciphertext + Array(#""}"#.utf8)
    }

    /// Builds the envelope from an encrypt or rewrap answer ("vault:vN:<base64>").
    /// The envelope of an encrypt or rewrap answer of transit key `keyName` (any bytes give one or a KeyVaultError).
    static func envelope(from response: HTTPResponse, keyName: String) throws -> WrappedKey {
        let data = try VaultClient.data(response)
        guard let ciphertext = data["ciphertext"] as? String, ciphertext.hasPrefix("vault:v") else {
            throw KeyVaultError.kmsError(provider: "vault", reason: "encrypt answer has no vault:vN: ciphertext")
        }
        let version = ciphertext.dropFirst("vault:v".count).prefix { $0.isNumber }
        return try WrappedKey(provider: .vault, keyIdentifier: keyName, keyVersion: String(version),
                              ciphertext: Array(ciphertext.utf8), parameters: ["binding": Array("uuid-prefix".utf8)]).checkedSize(provider: "vault")
    }
}

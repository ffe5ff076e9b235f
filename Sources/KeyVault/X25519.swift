internal import COpenSSL

/// X25519 (RFC 7748) through OpenSSL's EVP_PKEY: the key agreement behind a
/// recovery passkey's wraps. Private keys stay in KeyMaterial.
enum X25519 {
    static let keyByteCount = 32

    /// The public key of a 32-byte private key (clamped by OpenSSL as RFC 7748 says).
    static func publicKey(of privateKey: KeyMaterial) throws -> [UInt8] {
        let key = try privateKeyObject(privateKey)
        defer { EVP_PKEY_free(key) }
        var out = [UInt8](repeating: 0, count: keyByteCount)
        var length = keyByteCount
        guard EVP_PKEY_get_raw_public_key(key, &out, &length) == 1, length == keyByteCount else { throw KeyVaultError.crypto(operation: "X25519 public key") }
        return out
    }

    /// The shared secret of `privateKey` and `peer`; an all-zero result (a
    /// small-order peer key) is refused, as RFC 7748 section 6.1 allows.
    static func sharedSecret(_ privateKey: KeyMaterial, peer: [UInt8]) throws -> KeyMaterial {
        guard peer.count == keyByteCount else { throw KeyVaultError.malformedEnvelope(reason: "X25519 public key is \(peer.count) bytes") }
        let key = try privateKeyObject(privateKey)
        defer { EVP_PKEY_free(key) }
        guard let peerKey = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, peer, keyByteCount) else {
            throw KeyVaultError.crypto(operation: "X25519 peer key")
        }
        defer { EVP_PKEY_free(peerKey) }
        guard let ctx = EVP_PKEY_CTX_new(key, nil) else { throw KeyVaultError.crypto(operation: "EVP_PKEY_CTX_new") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: keyByteCount)
        var length = keyByteCount
        guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_derive_set_peer(ctx, peerKey) == 1, EVP_PKEY_derive(ctx, &out, &length) == 1,
              length == keyByteCount, out.contains(where: { $0 != 0 })
        else {
            ERR_clear_error()
            OPENSSL_cleanse(&out, out.count)
            throw KeyVaultError.crypto(operation: "X25519 key agreement")
        }
        return KeyMaterial(consuming: &out)
    }

    private static func privateKeyObject(_ privateKey: KeyMaterial) throws -> OpaquePointer {
        guard privateKey.count == keyByteCount,
              let key = privateKey.withUnsafeBytes({ EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), keyByteCount) })
        else { throw KeyVaultError.crypto(operation: "X25519 private key") }
        return key
    }
}

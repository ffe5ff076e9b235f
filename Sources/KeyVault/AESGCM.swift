internal import COpenSSL

/// AES-256-GCM through OpenSSL EVP, for the local key-encryption key.
/// Output layout: ciphertext then the 16-byte tag.
enum AESGCM {
    static let nonceByteCount = 12
    static let tagByteCount = 16

    static func seal(key: KeyMaterial, nonce: [UInt8], plaintext: KeyMaterial, associatedData: [UInt8]) throws -> [UInt8] {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw KeyVaultError.crypto(operation: "EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: plaintext.count + tagByteCount)
        var length: Int32 = 0
        let ok = key.withUnsafeBytes { k in
            plaintext.withUnsafeBytes { p in
                out.withUnsafeMutableBufferPointer { o in
                    EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nonce) == 1
                        && EVP_EncryptUpdate(ctx, nil, &length, associatedData, Int32(associatedData.count)) == 1
                        && EVP_EncryptUpdate(ctx, o.baseAddress, &length, p.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(p.count)) == 1
                        && EVP_EncryptFinal_ex(ctx, o.baseAddress! + Int(length), &length) == 1
                        && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(tagByteCount), o.baseAddress! + plaintext.count) == 1
                }
            }
        }
        guard ok else { throw KeyVaultError.crypto(operation: "AES-256-GCM seal") }
        return out
    }

    /// Returns nil when authentication fails.
    static func open(key: KeyMaterial, nonce: [UInt8], sealed: [UInt8], associatedData: [UInt8]) -> KeyMaterial? {
        guard sealed.count >= tagByteCount, nonce.count == nonceByteCount, let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let bodyCount = sealed.count - tagByteCount
        var out = [UInt8](repeating: 0, count: max(bodyCount, 1))
        var tag = Array(sealed[bodyCount...])
        var length: Int32 = 0
        let ok = key.withUnsafeBytes { k in
            out.withUnsafeMutableBufferPointer { o in
                EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, k.baseAddress!.assumingMemoryBound(to: UInt8.self), nonce) == 1
                    && EVP_DecryptUpdate(ctx, nil, &length, associatedData, Int32(associatedData.count)) == 1
                    && EVP_DecryptUpdate(ctx, o.baseAddress, &length, sealed, Int32(bodyCount)) == 1
                    && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(tagByteCount), &tag) == 1
                    && EVP_DecryptFinal_ex(ctx, o.baseAddress! + Int(length), &length) == 1
            }
        }
        ERR_clear_error()
        var body = Array(out.prefix(bodyCount))
        OPENSSL_cleanse(&out, out.count)
        guard ok else {
            OPENSSL_cleanse(&body, body.count)
            return nil
        }
        return KeyMaterial(consuming: &body)
    }

    static func randomBytes(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        guard RAND_bytes(&out, Int32(count)) == 1 else { throw KeyVaultError.crypto(operation: "RAND_bytes") }
        return out
    }
}

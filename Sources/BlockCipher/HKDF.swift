internal import COpenSSL

/// HKDF-SHA256 (RFC 5869) through OpenSSL's EVP_PKEY HKDF.
public enum HKDF {
    /// Derives `length` bytes from `secret` with `salt` and the domain string `info`.
    public static func deriveSHA256(secret: SecretBytes, salt: [UInt8], info: String, length: Int) throws -> SecretBytes {
        guard let pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { throw BlockCipherError.lastOpenSSL("EVP_PKEY_CTX_new_id(HKDF)") }
        defer { EVP_PKEY_CTX_free(pctx) }
        let info = Array(info.utf8)
        guard EVP_PKEY_derive_init(pctx) == 1,
              EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) == 1,
              salt.withUnsafeBufferPointer({ EVP_PKEY_CTX_set1_hkdf_salt(pctx, $0.baseAddress, Int32($0.count)) }) == 1,
              secret.withUnsafeBytes({ EVP_PKEY_CTX_set1_hkdf_key(pctx, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32($0.count)) }) == 1,
              info.withUnsafeBufferPointer({ EVP_PKEY_CTX_add1_hkdf_info(pctx, $0.baseAddress, Int32($0.count)) }) == 1
        else { throw BlockCipherError.lastOpenSSL("HKDF setup") }
        return try SecretBytes(count: length) { out in
            var outLength = length
            guard EVP_PKEY_derive(pctx, out.baseAddress!.assumingMemoryBound(to: UInt8.self), &outLength) == 1, outLength == length else {
                throw BlockCipherError.lastOpenSSL("EVP_PKEY_derive(HKDF)")
            }
        }
    }
}

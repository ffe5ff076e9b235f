internal import COpenSSL

/// Deterministic authenticated encryption (AES-256-SIV, RFC 5297) for names,
/// symlink targets and xattrs. Deterministic so a lookup can encrypt the name
/// and search for it; the associated data (e.g. the parent directory's inode)
/// makes equal names in different directories encrypt differently.
///
/// Output layout: 16-byte SIV tag, then the ciphertext (same length as the plaintext).
public final class NameCipher: Sendable {
    /// Key size: two 256-bit AES keys (MAC and CTR).
    public static let keyByteCount = 64
    /// Bytes added to every plaintext.
    public static let overhead = 16
    private let encryptors: CipherContextPool
    private let decryptors: CipherContextPool
    private let key: SecretBytes

    public init(key: SecretBytes) throws {
        guard key.count == Self.keyByteCount else { throw BlockCipherError.badKeyLength(expected: Self.keyByteCount, actual: key.count) }
        self.key = key
        let cipher = try FetchedCipher("AES-256-SIV")
        encryptors = CipherContextPool(cipher: cipher, key: key, encrypt: true)
        decryptors = CipherContextPool(cipher: cipher, key: key, encrypt: false)
    }

    /// Encrypts `plaintext` (at least one byte) bound to `associatedData`.
    /// OpenSSL's SIV computes the tag inside the plaintext update, which it
    /// skips for empty input, so callers frame values that may be empty.
    public func seal(_ plaintext: [UInt8], associatedData: [UInt8]) throws -> [UInt8] {
        guard !plaintext.isEmpty else { throw BlockCipherError.badUnitLength(expected: 1, actual: 0) }
        return try encryptors.with { context in
            var out = [UInt8](repeating: 0, count: Self.overhead + plaintext.count)
            var length: Int32 = 0
            guard rekey(context, encrypt: true),
                  EVP_CipherUpdate(context.ctx, nil, &length, associatedData, Int32(associatedData.count)) == 1
            else { throw BlockCipherError.lastOpenSSL("AES-SIV seal setup") }
            let ok = out.withUnsafeMutableBufferPointer { buf in
                EVP_CipherUpdate(context.ctx, buf.baseAddress! + Self.overhead, &length, plaintext, Int32(plaintext.count)) == 1
                    && EVP_CipherFinal_ex(context.ctx, buf.baseAddress! + Self.overhead, &length) == 1
                    && EVP_CIPHER_CTX_ctrl(context.ctx, EVP_CTRL_AEAD_GET_TAG, Int32(Self.overhead), buf.baseAddress!) == 1
            }
            guard ok else { throw BlockCipherError.lastOpenSSL("AES-SIV seal") }
            return out
        }
    }

    /// Re-arms a pooled context for a new message. OpenSSL 3.0's SIV keeps its
    /// finished state across an IV-only re-init, so the key is set again.
    private func rekey(_ context: CipherContext, encrypt: Bool) -> Bool {
        key.withUnsafeBytes {
            EVP_CipherInit_ex(context.ctx, nil, nil, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, encrypt ? 1 : 0) == 1
        }
    }

    /// Decrypts and authenticates; throws `.authenticationFailed` if anything was altered.
    public func open(_ sealed: [UInt8], associatedData: [UInt8], what: String = "name") throws -> [UInt8] {
        guard sealed.count >= Self.overhead else { throw BlockCipherError.authenticationFailed(what: what) }
        return try decryptors.with { context in
            var out = [UInt8](repeating: 0, count: sealed.count - Self.overhead)
            var length: Int32 = 0
            var tag = Array(sealed[0..<Self.overhead])
            guard rekey(context, encrypt: false),
                  EVP_CIPHER_CTX_ctrl(context.ctx, EVP_CTRL_AEAD_SET_TAG, Int32(Self.overhead), &tag) == 1,
                  EVP_CipherUpdate(context.ctx, nil, &length, associatedData, Int32(associatedData.count)) == 1
            else { throw BlockCipherError.lastOpenSSL("AES-SIV open setup") }
            let body = Array(sealed[Self.overhead...])
            let ok = out.withUnsafeMutableBufferPointer { buf in
                EVP_CipherUpdate(context.ctx, buf.baseAddress, &length, body, Int32(body.count)) == 1
                    && EVP_CipherFinal_ex(context.ctx, buf.baseAddress, &length) == 1
            }
            ERR_clear_error()
            guard ok else { throw BlockCipherError.authenticationFailed(what: what) }
            return out
        }
    }
}

internal import COpenSSL
import Locking

/// One EVP_CIPHER_CTX, keyed once; freed (and thereby cleansed) in deinit.
final class CipherContext: @unchecked Sendable {
    // @unchecked: a context is used by one thread at a time, which the pool guarantees.
    let ctx: OpaquePointer

    init(cipher: OpaquePointer, key: SecretBytes, encrypt: Bool) throws {
        guard let ctx = EVP_CIPHER_CTX_new() else { throw BlockCipherError.lastOpenSSL("EVP_CIPHER_CTX_new") }
        self.ctx = ctx
        let ok = key.withUnsafeBytes {
            EVP_CipherInit_ex(ctx, cipher, nil, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), nil, encrypt ? 1 : 0)
        }
        guard ok == 1 else { throw BlockCipherError.lastOpenSSL("EVP_CipherInit_ex") }
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }
}

/// A small free list of keyed contexts (cipher or MAC), so concurrent FUSE
/// threads each get their own without re-running the key schedule per request.
final class ContextPool<Context: Sendable>: Sendable {
    private let make: @Sendable () throws -> Context
    private let free = Locked<[Context]>([])

    init(make: @escaping @Sendable () throws -> Context) {
        self.make = make
    }

    func with<R>(_ body: (Context) throws -> R) throws -> R {
        let context = try free.withLock { $0.popLast() } ?? make()
        defer { free.withLock { $0.append(context) } }
        return try body(context)
    }
}

typealias CipherContextPool = ContextPool<CipherContext>

extension ContextPool where Context == CipherContext {
    convenience init(cipher: FetchedCipher, key: SecretBytes, encrypt: Bool) {
        self.init { try CipherContext(cipher: cipher.handle, key: key, encrypt: encrypt) }
    }
}

/// An algorithm fetched once (EVP_CIPHER_fetch) and released in deinit.
final class FetchedCipher: @unchecked Sendable {
    // @unchecked: an EVP_CIPHER is immutable after the fetch and OpenSSL
    // documents it as shareable between threads.
    let handle: OpaquePointer

    init(_ name: String) throws {
        guard let cipher = EVP_CIPHER_fetch(nil, name, nil) else { throw BlockCipherError.lastOpenSSL("EVP_CIPHER_fetch(\(name))") }
        handle = cipher
    }

    deinit { EVP_CIPHER_free(handle) }
}

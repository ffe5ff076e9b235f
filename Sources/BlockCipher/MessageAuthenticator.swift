internal import COpenSSL

/// HMAC-SHA-256 with one key, through OpenSSL's EVP_MAC. Keyed contexts are
/// pooled: each use re-arms one with `EVP_MAC_init(ctx, NULL, 0, NULL)`, which
/// keeps the key schedule, so a data unit's tag costs no key setup.
public final class MessageAuthenticator: Sendable {
    /// Bytes of a full HMAC-SHA-256 output.
    public static let fullByteCount = 32
    private let contexts: ContextPool<MACContext>

    public init(key: SecretBytes) throws {
        guard key.count > 0 else { throw BlockCipherError.badKeyLength(expected: 32, actual: 0) }
        let mac = try FetchedMAC("HMAC")
        contexts = ContextPool { try MACContext(mac: mac, key: key) }
    }

    /// HMAC of `first` followed by `second`, its first `out.count` bytes (at
    /// most 32) into `out`. Two parts, not an array of them: a unit tag is
    /// computed per 4 KiB unit and must not allocate.
    public func authenticate(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer? = nil, into out: UnsafeMutableRawBufferPointer) throws {
        precondition(out.count <= Self.fullByteCount)
        try contexts.with { context in
            guard EVP_MAC_init(context.ctx, nil, 0, nil) == 1 else { throw BlockCipherError.lastOpenSSL("EVP_MAC_init(HMAC)") }
            func update(_ part: UnsafeRawBufferPointer) throws {
                guard part.count > 0 else { return }
                guard EVP_MAC_update(context.ctx, part.baseAddress!.assumingMemoryBound(to: UInt8.self), part.count) == 1 else {
                    throw BlockCipherError.lastOpenSSL("EVP_MAC_update(HMAC)")
                }
            }
            try update(first)
            if let second { try update(second) }
            var full = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            var length = 0
            let ok = withUnsafeMutableBytes(of: &full) {
                EVP_MAC_final(context.ctx, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), &length, Self.fullByteCount) == 1
            }
            guard ok, length == Self.fullByteCount else { throw BlockCipherError.lastOpenSSL("EVP_MAC_final(HMAC)") }
            withUnsafeBytes(of: &full) { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<out.count])) }
        }
    }

    /// Constant-time comparison of two tags (CRYPTO_memcmp): no timing says how much of a forgery matched.
    public static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.count == 0 || CRYPTO_memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { x in b.withUnsafeBytes { equal(x, $0) } }
    }

    /// Byte-array convenience: the first `length` bytes of the HMAC of the concatenated `parts`.
    public func authenticate(_ parts: [[UInt8]], length: Int = fullByteCount) throws -> [UInt8] {
        let message = parts.reduce(into: [UInt8]()) { $0 += $1 }
        var out = [UInt8](repeating: 0, count: length)
        try message.withUnsafeBytes { m in try out.withUnsafeMutableBytes { try authenticate(m, into: $0) } }
        return out
    }
}

/// One keyed EVP_MAC_CTX; freed (and so cleansed) in deinit.
final class MACContext: @unchecked Sendable {
    // @unchecked: used by one thread at a time, which the pool guarantees.
    let ctx: OpaquePointer

    init(mac: FetchedMAC, key: SecretBytes) throws {
        guard let ctx = EVP_MAC_CTX_new(mac.handle) else { throw BlockCipherError.lastOpenSSL("EVP_MAC_CTX_new") }
        self.ctx = ctx
        let ok = key.withUnsafeBytes { COpenSSL_HMAC_SHA256_init(ctx, $0.baseAddress!.assumingMemoryBound(to: UInt8.self), $0.count) }
        guard ok == 1 else { throw BlockCipherError.lastOpenSSL("EVP_MAC_init(HMAC-SHA256)") }
    }

    deinit { EVP_MAC_CTX_free(ctx) }
}

/// A MAC algorithm fetched once (EVP_MAC_fetch) and released in deinit.
final class FetchedMAC: @unchecked Sendable {
    // @unchecked: an EVP_MAC is immutable after the fetch and shareable between threads.
    let handle: OpaquePointer

    init(_ name: String) throws {
        guard let mac = EVP_MAC_fetch(nil, name, nil) else { throw BlockCipherError.lastOpenSSL("EVP_MAC_fetch(\(name))") }
        handle = mac
    }

    deinit { EVP_MAC_free(handle) }
}

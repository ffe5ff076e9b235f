internal import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A fixed-size buffer for key material: page-aligned, mlock'ed so it is never
/// swapped, excluded from core dumps, and wiped with OPENSSL_cleanse on release.
///
/// The only way to read the bytes is `withUnsafeBytes`, so they never escape
/// into an `Array` that would be freed unwiped.
public final class SecretBytes: @unchecked Sendable {
    // @unchecked: the buffer is written only in init and wiped only in deinit;
    // in between it is read-only, so concurrent readers are safe.
    private let pointer: UnsafeMutableRawPointer
    private let capacity: Int
    /// Number of secret bytes held.
    public let count: Int
    /// Whether mlock succeeded (it can fail under a low RLIMIT_MEMLOCK).
    public let isLocked: Bool

    /// Allocates `count` zeroed bytes and lets `fill` write them.
    public init(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let capacity = max(page, (count + page - 1) / page * page)
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, page, capacity) == 0, let raw else {
            preconditionFailure("posix_memalign of \(capacity) bytes failed")
        }
        memset(raw, 0, capacity)
        self.pointer = raw
        self.capacity = capacity
        self.count = count
        self.isLocked = mlock(raw, capacity) == 0
        _ = madvise(raw, capacity, MADV_DONTDUMP)
        do {
            try fill(UnsafeMutableRawBufferPointer(start: raw, count: count))
        } catch {
            Self.wipe(raw, capacity, locked: isLocked)
            throw error
        }
    }

    /// Copies `bytes` into a new secret buffer. The caller wipes its own copy.
    public convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        self.init(count: bytes.count) { buffer in
            _ = buffer.initializeMemory(as: UInt8.self, from: bytes)
        }
    }

    /// `count` bytes from the OpenSSL CSPRNG (RAND_priv_bytes).
    public static func random(count: Int) throws -> SecretBytes {
        try SecretBytes(count: count) { buffer in
            guard RAND_priv_bytes(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), Int32(count)) == 1 else {
                throw BlockCipherError.randomFailed
            }
        }
    }

    deinit {
        Self.wipe(pointer, capacity, locked: isLocked)
    }

    private static func wipe(_ pointer: UnsafeMutableRawPointer, _ capacity: Int, locked: Bool) {
        OPENSSL_cleanse(pointer, capacity)
        if locked { munlock(pointer, capacity) }
        free(pointer)
    }

    /// Gives read access to the secret bytes for the duration of `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Constant-time comparison (CRYPTO_memcmp).
    public func constantTimeEquals(_ other: some Collection<UInt8>) -> Bool {
        let other = Array(other)
        guard other.count == count else { return false }
        return other.withUnsafeBytes { CRYPTO_memcmp(pointer, $0.baseAddress!, count) == 0 }
    }
}

/// Wipes a byte array in place (OPENSSL_cleanse), for transient copies of secrets.
public func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { buffer in
        if let base = buffer.baseAddress { OPENSSL_cleanse(base, buffer.count) }
    }
}

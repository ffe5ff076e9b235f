internal import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// An unwrapped secret as KeyVault hands it back: locked in memory and wiped
/// (OPENSSL_cleanse) when released. The CLI copies it into BlockCipher's
/// `SecretBytes` and drops this; KeyVault may not import BlockCipher.
public final class KeyMaterial: @unchecked Sendable {
    // @unchecked: written only in init, wiped only in deinit.
    private let pointer: UnsafeMutableRawPointer
    /// Number of bytes held.
    public let count: Int

    /// Copies `bytes`; the caller wipes its own copy.
    public init(copying bytes: UnsafeRawBufferPointer) {
        count = bytes.count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 16)
        _ = mlock(pointer, max(count, 1))
        if count > 0 { pointer.copyMemory(from: bytes.baseAddress!, byteCount: count) }
    }

    /// Copies `bytes` and wipes the array.
    public convenience init(consuming bytes: inout [UInt8]) {
        self.init(copying: bytes.withUnsafeBytes { $0 })
        bytes.withUnsafeMutableBytes { if let b = $0.baseAddress { OPENSSL_cleanse(b, $0.count) } }
    }

    deinit {
        OPENSSL_cleanse(pointer, max(count, 1))
        munlock(pointer, max(count, 1))
        pointer.deallocate()
    }

    /// Read access for the duration of `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// Constant-time comparison (CRYPTO_memcmp), without copying either secret.
    public func constantTimeEquals(_ other: KeyMaterial) -> Bool {
        count == other.count && CRYPTO_memcmp(pointer, other.pointer, count) == 0
    }
}

/// Overwrites a transient byte array that held a secret (OPENSSL_cleanse).
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { if let b = $0.baseAddress { OPENSSL_cleanse(b, $0.count) } }
}

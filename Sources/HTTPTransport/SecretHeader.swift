internal import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A request header whose value is a secret (a Vault token): the whole
/// "Name: value" line lives in one locked, zero-terminated buffer that is
/// wiped when the header is released, instead of in Swift Strings that
/// cannot be. The HTTP client wipes libcurl's copy after every request.
public final class SecretHeader: @unchecked Sendable {
    // @unchecked: the buffer is written once in init and only read afterwards.
    let line: UnsafeMutablePointer<CChar>
    private let capacity: Int

    /// - Parameter value: the secret bytes; copied, never kept by reference.
    public init(name: String, value: UnsafeRawBufferPointer) {
        let prefix = Array("\(name): ".utf8)
        capacity = prefix.count + value.count + 1
        line = .allocate(capacity: capacity)
        mlock(line, capacity)
        let raw = UnsafeMutableRawPointer(line)
        prefix.withUnsafeBytes { raw.copyMemory(from: $0.baseAddress!, byteCount: prefix.count) }
        if let base = value.baseAddress { (raw + prefix.count).copyMemory(from: base, byteCount: value.count) }
        line[capacity - 1] = 0
    }

    deinit {
        OPENSSL_cleanse(line, capacity)
        munlock(line, capacity)
        line.deallocate()
    }
}

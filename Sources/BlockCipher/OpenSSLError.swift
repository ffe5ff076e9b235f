internal import COpenSSL

extension BlockCipherError {
    /// Builds an `.openSSL` error from the thread's OpenSSL error queue (ERR_get_error).
    static func lastOpenSSL(_ operation: String) -> BlockCipherError {
        var detail = "unknown error"
        let code = ERR_get_error()
        if code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            detail = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        ERR_clear_error()
        return .openSSL(operation: operation, detail: detail)
    }
}

internal import COpenSSL
import HTTPTransport
#if canImport(Glibc)
import Glibc
#endif

/// Mutual-TLS client settings for a KMIP server.
public struct MutualTLS: Sendable, Equatable {
    public var clientCertificate: String
    public var clientKey: String
    /// CA bundle for the server's certificate; nil = the system's trust store.
    public var caFile: String?

    public init(clientCertificate: String, clientKey: String, caFile: String?) {
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.caFile = caFile
    }
}

/// One TLS 1.2+ connection over TCP through OpenSSL's SSL API, with peer
/// verification (chain and host name or IP) always on, a client certificate,
/// and timeouts on connect, read and write. Errors name the TLS problem
/// (untrusted server, refused client certificate) so a user can act on it.
final class TLSConnection {
    private let ctx: OpaquePointer
    private let ssl: OpaquePointer
    private let fd: Int32
    private let address: String

    init(host: String, port: Int, tls: MutualTLS, timeout: Double) throws {
        let address = "\(host):\(port)"
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw KeyVaultError.crypto(operation: "SSL_CTX_new") }
        var ok = false
        defer { if !ok { SSL_CTX_free(ctx) } }
        _ = COpenSSL_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        if let ca = tls.caFile {
            guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else {
                throw KeyVaultError.tls(provider: "kmip", address: address, reason: "cannot load CA certificate \(ca): \(Self.opensslError())")
            }
        } else {
            SSL_CTX_set_default_verify_paths(ctx)
        }
        guard SSL_CTX_use_certificate_chain_file(ctx, tls.clientCertificate) == 1 else {
            throw KeyVaultError.tls(provider: "kmip", address: address, reason: "cannot load client certificate \(tls.clientCertificate): \(Self.opensslError())")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, tls.clientKey, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            throw KeyVaultError.tls(provider: "kmip", address: address, reason: "client key \(tls.clientKey) is unreadable or does not match the certificate: \(Self.opensslError())")
        }
        let fd = try Self.connect(host: host, port: port, timeout: timeout, address: address)
        var closeFD = true
        defer { if closeFD { close(fd) } }
        guard let ssl = SSL_new(ctx) else { throw KeyVaultError.crypto(operation: "SSL_new") }
        var freeSSL = true
        defer { if freeSSL { SSL_free(ssl) } }
        SSL_set_fd(ssl, fd)
        let param = SSL_get0_param(ssl)
        if X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1 {
            ERR_clear_error()
            SSL_set1_host(ssl, host)
            _ = COpenSSL_SSL_set_tlsext_host_name(ssl, host)
        }
        ERR_clear_error()
        if SSL_connect(ssl) != 1 {
            let verify = SSL_get_verify_result(ssl)
            let detail = Self.opensslError()
            if verify != X509_V_OK {
                throw KeyVaultError.tls(provider: "kmip", address: address,
                                        reason: "the server's certificate is not trusted (\(String(cString: X509_verify_cert_error_string(verify)))); give its CA with --ca-cert")
            }
            if detail.contains("alert") || detail.contains("certificate") {
                throw KeyVaultError.tls(provider: "kmip", address: address, reason: "the server refused the handshake (\(detail)); check that the client certificate is signed by a CA the server trusts, is not expired, and has extended key usage clientAuth")
            }
            throw KeyVaultError.unreachable(provider: "kmip", address: address, reason: "TLS handshake failed: \(detail.isEmpty ? "connection closed" : detail)")
        }
        freeSSL = false
        closeFD = false
        ok = true
        self.ctx = ctx
        self.ssl = ssl
        self.fd = fd
        self.address = address
    }

    deinit {
        SSL_shutdown(ssl)
        SSL_free(ssl)
        SSL_CTX_free(ctx)
        close(fd)
    }

    func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress! + sent, Int32(bytes.count - sent)) }
            guard n > 0 else { throw KeyVaultError.unreachable(provider: "kmip", address: address, reason: "write failed: \(Self.opensslError())") }
            sent += Int(n)
        }
    }

    func read(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress! + got, Int32(count - got)) }
            guard n > 0 else {
                let reason = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out waiting for the answer" : "connection closed (\(Self.opensslError()))"
                throw KeyVaultError.unreachable(provider: "kmip", address: address, reason: reason)
            }
            got += Int(n)
        }
        return out
    }

    /// TCP connect with a timeout; read and write timeouts set on the socket.
    private static func connect(host: String, port: Int, timeout: Double, address: String) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw KeyVaultError.unreachable(provider: "kmip", address: address, reason: "cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = ECONNREFUSED
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let ai = node {
            node = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            guard fd >= 0 else { lastError = errno; continue }
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            // With SO_SNDTIMEO set, connect(2) on Linux also gives up after the timeout.
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
            lastError = errno
            close(fd)
        }
        throw TransportError(kind: lastError == ETIMEDOUT || lastError == EINPROGRESS ? .timeout : .connect, message: String(cString: strerror(lastError)))
    }

    /// The queued OpenSSL errors as one line (and clears the queue).
    static func opensslError() -> String {
        var parts: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            parts.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return parts.joined(separator: "; ")
    }
}

internal import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// One HTTP request. The body is sent from this array without a copy in libcurl
/// (CURLOPT_POSTFIELDS), so a caller that puts a secret in it can wipe it afterwards.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    /// Headers whose values are secrets (sent after `headers`).
    public var secretHeaders: [SecretHeader] = []
    public var body: [UInt8]
    /// The largest response body accepted, in bytes; nil for the client's limit. Set it where
    /// the expected size is known (a chunk, a range), so a server cannot send more.
    public var maxResponseBytes: Int?

    public init(method: String, url: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [], maxResponseBytes: Int? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.maxResponseBytes = maxResponseBytes
    }
}

/// A response: status, headers (names lower-cased) and the body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The longest excerpt of a server's text put into an error message, in characters.
    public static let excerptLength = 300

    /// Text a server sent, made fit for a one-line error message: newlines become spaces,
    /// and it is cut at `excerptLength` characters.
    public static func excerpt(_ text: some StringProtocol) -> String {
        String(text.prefix(excerptLength).split(whereSeparator: \.isNewline).joined(separator: " "))
    }

    /// Overwrites the body (it may hold a secret the server returned).
    public mutating func wipeBody() {
        body.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress else { return }
            memset_s_portable(base, raw.count)
        }
    }
}

/// TLS settings: verification is always on; these add trust or a client identity.
public struct TLSOptions: Sendable, Equatable {
    /// PEM file of CA certificates to trust instead of the system store.
    public var caFile: String?
    /// PEM client certificate and key for mutual TLS.
    public var clientCertificate: String?
    public var clientKey: String?
    /// Allow http:// to a host that is not a loopback address (`--insecure-http`).
    public var allowPlainHTTP: Bool

    public init(caFile: String? = nil, clientCertificate: String? = nil, clientKey: String? = nil, allowPlainHTTP: Bool = false) {
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.allowPlainHTTP = allowPlainHTTP
    }
}


/// Why a request got no HTTP answer at all.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    /// `responseTooLarge`: the body or headers passed their limit and the transfer was aborted.
    /// `plainHTTP`: an http:// URL to a host that is not a loopback address, refused before any byte is sent.
    public enum Kind: Sendable { case resolve, connect, tls, timeout, responseTooLarge, plainHTTP, other }
    public var kind: Kind
    public var message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
    /// Worth retrying: the server may come back (TLS and DNS failures will not fix themselves).
    public var isTransient: Bool { kind == .connect || kind == .timeout || kind == .other }
}

/// A small blocking HTTP/1.1 client over libcurl's easy interface. Chosen over
/// FoundationNetworking's URLSession because it gives exact control of the
/// trusted CA file, client certificates, timeouts and of where secret bytes go,
/// and it adds no Foundation networking stack to the binary. One instance is used
/// by one thread at a time (KMS calls happen in CLI flows and a renewal thread).
public final class HTTPClient: @unchecked Sendable {
    private let tls: TLSOptions
    private let connectTimeout: Double
    private let totalTimeout: Double
    private let maxResponseBytes: Int
    private let handle: UnsafeMutableRawPointer
    private let lock = NSLockLite()

    /// The default cap on a response body, in bytes: above the largest answer kmsfs asks for
    /// without knowing its size (an S3 listing page, an 8 MiB part or range plus its slack).
    public static let defaultMaxResponseBytes = 64 << 20
    /// The cap for small JSON answers (KMS APIs), in bytes.
    public static let smallAnswerBytes = 1 << 20
    /// The cap on all header lines of one response, in bytes (libcurl limits only each line).
    static let maxHeaderBytes = 64 << 10

    private static let globalInit: Bool = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK }()

    public init(tls: TLSOptions = TLSOptions(), connectTimeout: Double = 5, totalTimeout: Double = 15,
                maxResponseBytes: Int = HTTPClient.defaultMaxResponseBytes) {
        _ = Self.globalInit
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.totalTimeout = totalTimeout
        self.maxResponseBytes = maxResponseBytes
        handle = curl_easy_init()!
    }

    deinit { curl_easy_cleanup(handle) }

    /// Sends one request and waits for the whole response.
    public func send(_ request: HTTPRequest) throws -> HTTPResponse {
        let destination = PlainHTTPPolicy.Destination(request.url)
        if let host = destination.refusedHost(allowPlainHTTP: tls.allowPlainHTTP) {
            throw TransportError(kind: .plainHTTP, message: "refusing plain http:// to \(host): keys and credentials go only over https or to a loopback address (--insecure-http overrides)")
        }
        lock.lock(); defer { lock.unlock() }
        curl_easy_reset(handle)
        let sink = ResponseSink(maxBodyBytes: request.maxResponseBytes ?? maxResponseBytes)
        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        for header in request.headers { headerList = curl_slist_append(headerList, "\(header.name): \(header.value)") }
        for header in request.secretHeaders { headerList = curl_slist_append(headerList, header.line) }
        // curl adds "Expect: 100-continue" to larger POSTs, costing a round trip; servers here do not need it.
        headerList = curl_slist_append(headerList, "Expect:")
        defer {
            // curl_slist_append copied each line (tokens, signatures): wipe the copies before freeing them.
            var node = headerList
            while let n = node {
                if let data = n.pointee.data { memset_s_portable(data, strlen(data)) }
                node = n.pointee.next
            }
            curl_slist_free_all(headerList)
        }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        let code: CURLcode = request.body.withUnsafeBytes { body in
            errorBuffer.withUnsafeMutableBufferPointer { errbuf in
                CCurl_setopt_string(handle, CURLOPT_URL, request.url)
                CCurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
                CCurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
                // What the policy allowed, as libcurl itself parses the URL: https only unless plain HTTP is allowed there.
                CCurl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, destination.permitsPlain(allowPlainHTTP: tls.allowPlainHTTP) ? "http,https" : "https")
                CCurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(connectTimeout * 1000))
                CCurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, Int(totalTimeout * 1000))
                // TLS 1.2 at least, whatever the system's OpenSSL configuration allows.
                CCurl_setopt_long(handle, CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2))
                CCurl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1)
                CCurl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2)
                if let ca = tls.caFile { CCurl_setopt_string(handle, CURLOPT_CAINFO, ca) }
                if let cert = tls.clientCertificate { CCurl_setopt_string(handle, CURLOPT_SSLCERT, cert) }
                if let key = tls.clientKey { CCurl_setopt_string(handle, CURLOPT_SSLKEY, key) }
                CCurl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errbuf.baseAddress)
                CCurl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)
                CCurl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method)
                if request.method == "HEAD" { CCurl_setopt_long(handle, CURLOPT_NOBODY, 1) }
                // Refuses at once an answer whose Content-Length is over the limit; the write callback
                // catches the rest (chunked answers, lying lengths).
                CCurl_setopt_size(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(sink.maxBodyBytes))
                if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" {
                    CCurl_setopt_size(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
                    CCurl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: body.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
                }
                let unmanaged = Unmanaged.passUnretained(sink).toOpaque()
                CCurl_setopt_write_function(handle, { ptr, size, count, user in
                    let sink = Unmanaged<ResponseSink>.fromOpaque(user!).takeUnretainedValue()
                    let n = size * count
                    // Returning less than n makes libcurl abort with CURLE_WRITE_ERROR.
                    guard let ptr, sink.accept(body: n) else { return 0 }
                    sink.body.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: n))
                    return n
                })
                CCurl_setopt_pointer(handle, CURLOPT_WRITEDATA, unmanaged)
                CCurl_setopt_header_function(handle, { ptr, size, count, user in
                    let sink = Unmanaged<ResponseSink>.fromOpaque(user!).takeUnretainedValue()
                    let n = size * count
                    guard let ptr, sink.accept(header: n) else { return 0 }
                    sink.headerLine(UnsafeRawBufferPointer(start: ptr, count: n))
                    return n
                })
                CCurl_setopt_pointer(handle, CURLOPT_HEADERDATA, unmanaged)
                return curl_easy_perform(handle)
            }
        }
        guard code == CURLE_OK else {
            if sink.overflow != nil || code == CURLE_FILESIZE_EXCEEDED {
                let part = sink.overflow ?? .body
                throw TransportError(kind: .responseTooLarge, message: "the answer's \(part.rawValue) is larger than \(sink.limit(of: part)) bytes; refused")
            }
            let detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let message = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
            throw TransportError(kind: Self.kind(of: code), message: message)
        }
        var status = 0
        CCurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body)
    }

    private static func kind(of code: CURLcode) -> TransportError.Kind {
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: return .resolve
        case CURLE_COULDNT_CONNECT: return .connect
        case CURLE_OPERATION_TIMEDOUT: return .timeout
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE,
             CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE:
            return .tls
        default: return .other
        }
    }
}

/// Collects the body and headers of one response. The body's capacity is
/// reserved up front so small (secret-bearing) responses are never reallocated,
/// which would leave unwiped copies behind.
private final class ResponseSink {
    var body: [UInt8] = { var a = [UInt8](); a.reserveCapacity(64 * 1024); return a }()
    var headers: [String: String] = [:]
    let maxBodyBytes: Int
    private var headerBytes = 0
    enum Part: String { case body, headers }
    /// The part that passed its limit, once the transfer was aborted for it.
    private(set) var overflow: Part?

    init(maxBodyBytes: Int) { self.maxBodyBytes = max(0, maxBodyBytes) }

    func limit(of part: Part) -> Int { part == .headers ? HTTPClient.maxHeaderBytes : maxBodyBytes }

    /// Whether `count` more body bytes stay within the limit (body.count never exceeds it).
    func accept(body count: Int) -> Bool {
        guard count <= maxBodyBytes - body.count else { overflow = .body; return false }
        return true
    }

    /// Whether a header line of `count` bytes keeps all headers of the response within their limit.
    func accept(header count: Int) -> Bool {
        guard count <= HTTPClient.maxHeaderBytes - headerBytes else { overflow = .headers; return false }
        headerBytes += count
        return true
    }

    func headerLine(_ raw: UnsafeRawBufferPointer) {
        let line = String(decoding: raw, as: UTF8.self)
        if line.hasPrefix("HTTP/") { headers = [:]; return }  // a new response (after 100 Continue or a redirect)
        guard let colon = line.firstIndex(of: ":") else { return }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t\r\n")
        headers[name] = value
    }
}

/// A pthread mutex (Foundation's NSLock is not imported here on purpose).
final class NSLockLite: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }
}

/// Zeroes memory in a way the optimiser may not drop.
func memset_s_portable(_ base: UnsafeMutableRawPointer, _ count: Int) {
    explicit_bzero(base, count)
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self[...]
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

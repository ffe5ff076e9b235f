internal import CCurl
#if canImport(Glibc)
import Glibc
#endif

/// KMS answers carry the master secret and every request carries a token or
/// a signature: plain HTTP only to a loopback address (a local KMS, tests),
/// or when the user said `--insecure-http`. The URL is taken apart by
/// libcurl's own parser, so the host checked is the host libcurl connects to
/// (`http://evil.example#@127.0.0.1` is evil.example, as libcurl sees it).
public enum PlainHTTPPolicy {
    /// Scheme and host of a URL as libcurl parses it (nil fields when it does not).
    public struct Destination: Sendable {
        public let scheme: String?
        public let host: String?

        public init(_ url: String) {
            guard let handle = curl_url() else {
                scheme = nil
                host = nil
                return
            }
            defer { curl_url_cleanup(handle) }
            guard curl_url_set(handle, CURLUPART_URL, url, UInt32(CURLU_NON_SUPPORT_SCHEME)) == CURLUE_OK else {
                scheme = nil
                host = nil
                return
            }
            func part(_ which: CURLUPart) -> String? {
                var value: UnsafeMutablePointer<CChar>?
                guard curl_url_get(handle, which, &value, 0) == CURLUE_OK, let value else { return nil }
                defer { curl_free(value) }
                return String(cString: value).lowercased()
            }
            scheme = part(CURLUPART_SCHEME)
            host = part(CURLUPART_HOST).map { $0.hasPrefix("[") && $0.hasSuffix("]") ? String($0.dropFirst().dropLast()) : $0 }
        }

        /// Whether plain http:// may be used for this destination.
        public func permitsPlain(allowPlainHTTP: Bool) -> Bool { allowPlainHTTP || host.map(PlainHTTPPolicy.isLoopback) == true }

        /// The host of an http:// destination the policy refuses, or nil when allowed.
        /// A URL libcurl cannot parse passes here and fails in libcurl (sent as https only).
        public func refusedHost(allowPlainHTTP: Bool) -> String? {
            guard let scheme, scheme == "http", !permitsPlain(allowPlainHTTP: allowPlainHTTP) else { return nil }
            return host ?? "an unknown host"
        }
    }

    /// Whether `host` (brackets removed) is on this machine.
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased()
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// The host of an http:// URL that the policy refuses, or nil when allowed.
    public static func refusedHost(_ url: String, allowPlainHTTP: Bool) -> String? {
        Destination(url).refusedHost(allowPlainHTTP: allowPlainHTTP)
    }
}

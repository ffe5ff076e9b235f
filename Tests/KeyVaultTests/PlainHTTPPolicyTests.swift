import Foundation
import HTTPTransport
import Testing

/// Plain HTTP carries KMS answers (the master secret) and signed requests in
/// the clear: allowed to loopback addresses only, unless the user opted in.
@Suite("Plain HTTP policy")
struct PlainHTTPPolicyTests {
    @Test("http:// to a non-loopback host is refused; https, loopback and an explicit opt-in are not")
    func policy() {
        let refused = ["http://vault.example.com:8200", "http://10.0.0.5/", "http://127.0.0.1.example.com/x", "HTTP://kms.local",
                       "http://user:pw@evil.example/path", "http://[2001:db8::1]:8200/v1", "http://128.0.0.1",
                       // Tricks that make a naive parser see a loopback host where libcurl connects elsewhere.
                       "http://evil.example#@127.0.0.1/v1/x", "http://evil.example?@127.0.0.1", "http://127.0.0.1@evil.example/"]
        for url in refused { #expect(PlainHTTPPolicy.refusedHost(url, allowPlainHTTP: false) != nil, "\(url)") }
        let allowed = ["https://vault.example.com", "http://127.0.0.1:8200", "http://127.8.9.10/", "http://localhost:9000/b", "http://[::1]:8200"]
        for url in allowed { #expect(PlainHTTPPolicy.refusedHost(url, allowPlainHTTP: false) == nil, "\(url)") }
        #expect(PlainHTTPPolicy.refusedHost("http://vault.example.com", allowPlainHTTP: true) == nil)
    }

    @Test("the client refuses before sending a byte")
    func clientRefuses() {
        // 192.0.2.0/24 is TEST-NET-1: nothing answers there, and nothing is sent (the refusal comes first).
        let client = HTTPClient(connectTimeout: 1, totalTimeout: 1)
        do {
            _ = try client.send(HTTPRequest(method: "GET", url: "http://192.0.2.1/v1/sys/health"))
            Issue.record("a plain HTTP request to a non-loopback address was sent")
        } catch let e as TransportError {
            #expect(e.kind == .plainHTTP && e.message.contains("192.0.2.1"), "\(e)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

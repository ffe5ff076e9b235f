import Foundation
import HTTPTransport
@testable import KeyVault
import Testing

/// Answers larger than a client accepts, from a real server on 127.0.0.1:
/// libcurl must abort the transfer with `responseTooLarge` (bounded memory,
/// no hang), and the KMS clients must report it as a KMS error.
@Suite("HTTP response limits")
struct HTTPLimitTests {
    static let server: LoopbackHTTPServer? = try? LoopbackHTTPServer { path in
        let parts = path.split(separator: "/")
        let n = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        switch parts.first {
        case "exact": return .exact(n)
        case "endless": return .endless
        case "claims": return .claims(n)
        case "headers": return .headers(lines: n)
        default: return .exact(2 << 20)  // "/", as AWS KMS is called: a 2 MiB answer
        }
    }

    static func get(_ path: String, limit: Int? = nil, client: HTTPClient = HTTPClient(connectTimeout: 2, totalTimeout: 20)) throws -> HTTPResponse {
        let server = try #require(server)
        return try client.send(HTTPRequest(method: "GET", url: server.url + path, maxResponseBytes: limit))
    }

    static func expectTooLarge(_ path: String, limit: Int? = nil, client: HTTPClient = HTTPClient(connectTimeout: 2, totalTimeout: 20)) {
        do {
            let response = try get(path, limit: limit, client: client)
            Issue.record("\(path) was accepted: \(response.body.count) bytes")
        } catch let error as TransportError {
            #expect(error.kind == .responseTooLarge, "\(path): \(error)")
            #expect(!error.isTransient)
        } catch { Issue.record("\(path): \(error)") }
    }

    @Test("a body of exactly the limit is accepted, one byte more is refused")
    func boundary() throws {
        #expect(try Self.get("/exact/1000", limit: 1000).body.count == 1000)
        Self.expectTooLarge("/exact/1001", limit: 1000)
    }

    @Test("a Content-Length over the limit is refused before the body arrives")
    func claimedLength() {
        Self.expectTooLarge("/claims/100000000000", limit: 1 << 20)
    }

    @Test("an endless chunked body is cut off at the client's default limit")
    func endless() {
        let started = Date()
        Self.expectTooLarge("/endless", client: HTTPClient(connectTimeout: 2, totalTimeout: 20, maxResponseBytes: 4 << 20))
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test("the default limit is 64 MiB, and KMS answers are capped at 1 MiB")
    func defaults() {
        #expect(HTTPClient.defaultMaxResponseBytes == 64 << 20)
        #expect(HTTPClient.smallAnswerBytes == 1 << 20)
    }

    @Test("headers over 64 KiB in all are refused")
    func headers() throws {
        #expect(try Self.get("/headers/100").status == 200)
        Self.expectTooLarge("/headers/2000")
    }

    @Test("an AWS KMS answer over 1 MiB is a KMS error, not 'unreachable'")
    func kmsAnswer() throws {
        let server = try #require(Self.server)
        let settings = AWSKMSSettings(endpoint: server.url, region: "us-east-1", keyID: "alias/k",
                                      credentials: AWSCredentials(accessKeyID: "AKIDTEST", secretAccessKey: "secret"),
                                      retry: RetryPolicy(attempts: 1, connectTimeout: 2, requestTimeout: 10))
        let error = #expect(throws: KeyVaultError.self) { try AWSKMSKeyManager(settings: settings).describe("alias/k") }
        guard case .kmsError(_, let reason)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(reason.contains("larger than \(1 << 20) bytes"), "\(reason)")
    }
}

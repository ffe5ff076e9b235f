import Foundation
import HTTPTransport

/// Where and how to reach a Vault or OpenBao transit key. The token is a
/// credential: it lives in locked memory and is never printed.
public struct VaultSettings: Sendable {
    /// Base URL, e.g. https://vault.example:8200 (no trailing slash).
    public var address: String
    /// The transit key's name.
    public var keyName: String
    /// Vault Enterprise / OpenBao namespace, sent as X-Vault-Namespace.
    public var namespace: String?
    /// Where the transit engine is mounted.
    public var transitMount: String
    /// PEM CA bundle that signs the server's certificate, for private CAs.
    public var caFile: String?
    public var token: KeyMaterial
    public var retry: RetryPolicy
    /// Allow an http:// address that is not a loopback address.
    public var allowPlainHTTP = false

    public init(address: String, keyName: String, namespace: String? = nil, transitMount: String = "transit",
                caFile: String? = nil, token: KeyMaterial, retry: RetryPolicy = .standard) {
        self.address = address.hasSuffix("/") ? String(address.dropLast()) : address
        self.keyName = keyName
        self.namespace = namespace
        self.transitMount = transitMount
        self.caFile = caFile
        self.token = token
        self.retry = retry
    }
}

/// Facts about the token from auth/token/lookup-self (never the token itself).
public struct VaultTokenInfo: Sendable, Equatable {
    public var accessor: String
    public var policies: [String]
    /// Seconds left; 0 for a root token that never expires.
    public var ttl: Int
    public var renewable: Bool
    public var expireTime: String?
}

/// Facts about the transit key from transit/keys/<key>.
public struct VaultKeyInfo: Sendable, Equatable {
    public var type: String
    public var latestVersion: Int
    public var minDecryptionVersion: Int
    public var supportsEncryption: Bool
    public var supportsDecryption: Bool
}

/// The Vault HTTP API as kmsfs uses it: JSON over HTTPS with the token header,
/// retries on transient failures, and errors that name what to fix.
final class VaultClient: @unchecked Sendable {
    let settings: VaultSettings
    private let http: HTTPClient
    /// The token as the one header line it is sent in (wiped when the client goes).
    private let tokenHeader: SecretHeader

    init(settings: VaultSettings) {
        self.settings = settings
        tokenHeader = settings.token.withUnsafeBytes { SecretHeader(name: "X-Vault-Token", value: $0) }
        // Vault answers are small JSON objects: 1 MiB is far above any of them.
        http = HTTPClient(tls: TLSOptions(caFile: settings.caFile, allowPlainHTTP: settings.allowPlainHTTP), connectTimeout: settings.retry.connectTimeout,
                          totalTimeout: settings.retry.requestTimeout, maxResponseBytes: HTTPClient.smallAnswerBytes)
    }

    private var caHint: String {
        settings.caFile == nil
            ? "if the server uses a private CA, give its certificate with --ca-cert"
            : "check that --ca-cert \(settings.caFile!) signed the server's certificate and that the address's host name is in it"
    }

    /// Sends one API call. `capability` names what the policy must grant on `path`
    /// ("read", "update"), for the 403 message. The body is wiped by the caller.
    /// Answers with a status in `accept` are returned as they are (a KV read's 404,
    /// a check-and-set conflict's 400).
    func call(_ method: String, _ path: String, body: [UInt8] = [], capability: String, accept: Set<Int> = []) throws -> HTTPResponse {
        var headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
        if let ns = settings.namespace, !ns.isEmpty { headers.append(("X-Vault-Namespace", ns)) }
        var request = HTTPRequest(method: method, url: settings.address + "/v1/" + path, headers: headers, body: body)
        request.secretHeaders = [tokenHeader]
        let response = try settings.retry.send(http, provider: "vault", address: settings.address, caHint: caHint, request: { request }) {
            $0.status == 429 || $0.status >= 500 ? "HTTP \($0.status): \(Self.errors(in: $0))" : nil
        }
        switch response.status {
        case 200...299:
            return response
        case let status where accept.contains(status):
            return response
        case 403:
            if path != "auth/token/lookup-self", (try? lookupSelf()) != nil {
                throw KeyVaultError.permissionDenied(provider: "vault", operation: "\(method) \(path)",
                                                     reason: "the token's policy lacks the \"\(capability)\" capability on path \"\(path)\"")
            }
            throw KeyVaultError.credentialsRejected(provider: "vault", reason: "the token is invalid, expired or revoked (\(Self.errors(in: response))); create a new one and run 'kmsfs security kms set' again")
        case 404 where path.hasPrefix(settings.transitMount + "/keys/"):
            throw KeyVaultError.keyNotFound(provider: "vault", key: settings.keyName, reason: "no transit key '\(settings.keyName)' at \(settings.transitMount)/keys/\(settings.keyName)")
        case 404:
            throw KeyVaultError.kmsError(provider: "vault", reason: "\(method) \(path): not found (is the transit engine mounted at '\(settings.transitMount)/'?)")
        default:
            let text = Self.errors(in: response)
            if text.contains("encryption key not found") || text.contains("key not found") {
                throw KeyVaultError.keyNotFound(provider: "vault", key: settings.keyName, reason: text)
            }
            throw KeyVaultError.kmsError(provider: "vault", reason: "\(method) \(path) answered HTTP \(response.status): \(text)")
        }
    }

    /// The "errors" array of a Vault error answer, joined.
    static func errors(in response: HTTPResponse) -> String {
        if let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
           let errors = object["errors"] as? [String], !errors.isEmpty {
            return HTTPResponse.excerpt(errors.joined(separator: "; "))
        }
        let text = response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "empty answer" : HTTPResponse.excerpt(text)
    }

    /// The "data" object of a (non-secret) answer.
    /// The `key` object of an answer. lookup-self and renew-self answers carry
    /// the token itself ("id", "client_token"): it is blanked in the body before
    /// parsing, and the body wiped after, so no String copy of it is made.
    static func data(_ response: consuming HTTPResponse, key: String = "data") throws -> [String: Any] {
        for secret in ["id", "client_token"] { JSONSecretField.redact(named: secret, in: &response.body) }
        defer { response.wipeBody() }
        guard let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any],
              let data = object[key] as? [String: Any] else {
            throw KeyVaultError.kmsError(provider: "vault", reason: "unexpected answer: \(HTTPResponse.excerpt(response.bodyText))")
        }
        return data
    }

    func lookupSelf() throws -> VaultTokenInfo {
        let data = try Self.data(call("GET", "auth/token/lookup-self", capability: "read"))
        return VaultTokenInfo(accessor: data["accessor"] as? String ?? "",
                              policies: data["policies"] as? [String] ?? [],
                              ttl: (data["ttl"] as? NSNumber)?.intValue ?? 0,
                              renewable: data["renewable"] as? Bool ?? false,
                              expireTime: data["expire_time"] as? String)
    }

    /// Renews the token (auth/token/renew-self) and returns its new TTL in seconds.
    func renewSelf() throws -> Int {
        let auth = try Self.data(call("POST", "auth/token/renew-self", body: Array("{}".utf8), capability: "update"), key: "auth")
        return (auth["lease_duration"] as? NSNumber)?.intValue ?? 0
    }

    func keyInfo() throws -> VaultKeyInfo {
        let data = try Self.data(call("GET", "\(settings.transitMount)/keys/\(settings.keyName)", capability: "read"))
        return VaultKeyInfo(type: data["type"] as? String ?? "",
                            latestVersion: (data["latest_version"] as? NSNumber)?.intValue ?? 0,
                            minDecryptionVersion: (data["min_decryption_version"] as? NSNumber)?.intValue ?? 0,
                            supportsEncryption: data["supports_encryption"] as? Bool ?? false,
                            supportsDecryption: data["supports_decryption"] as? Bool ?? false)
    }
}

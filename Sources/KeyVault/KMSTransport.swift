import HTTPTransport
#if canImport(Glibc)
import Glibc
#endif

/// How hard a KMS client tries before it reports the KMS as down: transient
/// failures (connection refused, timeouts, 429 and 5xx answers) are retried
/// with exponential backoff; anything else fails at once.
public struct RetryPolicy: Sendable, Equatable {
    public var attempts: Int
    public var initialDelay: Double
    public var connectTimeout: Double
    public var requestTimeout: Double

    public init(attempts: Int = 4, initialDelay: Double = 0.5, connectTimeout: Double = 5, requestTimeout: Double = 15) {
        self.attempts = max(1, attempts)
        self.initialDelay = initialDelay
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
    }

    public static let standard = RetryPolicy()

    /// Runs `body` until it succeeds, throws a non-transient error, or the attempts run out.
    /// `body` returns nil to ask for a retry and gives the reason for the final error.
    func run<T>(provider: String, address: String, _ body: () throws -> Result<T, RetryableFailure>) throws -> T {
        var delay = initialDelay
        var last = ""
        for attempt in 1...attempts {
            switch try body() {
            case .success(let value): return value
            case .failure(let failure):
                last = failure.reason
                if attempt < attempts {
                    usleep(useconds_t(delay * 1_000_000))
                    delay *= 2
                }
            }
        }
        throw KeyVaultError.unreachable(provider: provider, address: address, reason: "\(last) (gave up after \(attempts) attempts)")
    }
}

/// A failure worth another attempt.
struct RetryableFailure: Error {
    var reason: String
}

extension RetryPolicy {
    /// Sends a KMS API request, retrying transient network failures and the
    /// answers `retryable` names (it returns the reason, or nil). `request` is
    /// called for every attempt, so a signed request is signed afresh.
    public func send(_ http: HTTPClient, provider: String, address: String, caHint: String,
                     request: () -> HTTPRequest, retryable: (HTTPResponse) -> String?) throws -> HTTPResponse {
        try run(provider: provider, address: address) {
            let response: HTTPResponse
            do { response = try http.send(request()) } catch let e as TransportError {
                if e.isTransient { return .failure(RetryableFailure(reason: e.message)) }
                throw e.keyVaultError(provider: provider, address: address, caHint: caHint)
            }
            if let reason = retryable(response) { return .failure(RetryableFailure(reason: reason)) }
            return .success(response)
        }
    }
}

extension TransportError {
    /// The KeyVault error for a transport failure that will not fix itself by retrying.
    func keyVaultError(provider: String, address: String, caHint: String) -> KeyVaultError {
        switch kind {
        case .tls: return .tls(provider: provider, address: address, reason: "\(message); \(caHint)")
        case .plainHTTP: return .tls(provider: provider, address: address, reason: message)
        case .responseTooLarge: return .kmsError(provider: provider, reason: "\(address) sent an oversized answer: \(message)")
        default: return .unreachable(provider: provider, address: address, reason: message)
        }
    }
}

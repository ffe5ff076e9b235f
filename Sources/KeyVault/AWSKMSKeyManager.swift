import Foundation
import HTTPTransport

/// Where and how to reach an AWS KMS key.
public struct AWSKMSSettings: Sendable {
    /// https://kms.<region>.amazonaws.com, or an emulator's URL.
    public var endpoint: String
    public var region: String
    /// Key id, key ARN, alias/name or alias ARN.
    public var keyID: String
    public var credentials: AWSCredentials
    public var caFile: String?
    public var retry: RetryPolicy
    /// Allow an http:// endpoint that is not a loopback address.
    public var allowPlainHTTP = false

    public init(endpoint: String, region: String, keyID: String, credentials: AWSCredentials, caFile: String? = nil, retry: RetryPolicy = .standard) {
        self.endpoint = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
        self.region = region
        self.keyID = keyID
        self.credentials = credentials
        self.caFile = caFile
        self.retry = retry
    }

    /// The public endpoint of a region.
    public static func endpoint(region: String) -> String { "https://kms.\(region).amazonaws.com" }
}

/// Facts from DescribeKey.
public struct AWSKeyInfo: Sendable, Equatable {
    public var arn: String
    public var state: String
    public var spec: String
    public var usage: String
    public var manager: String
}

/// AWS KMS as the KMS, over its JSON API (TrentService) signed with SigV4.
/// The filesystem secret is encrypted with the encryption context
/// {"kmsfs:filesystem": <uuid>}, so a ciphertext moved into another
/// filesystem's superblock does not decrypt. The envelope records the key ARN
/// that encrypted it, so decryption still finds the old key after an alias moved.
public struct AWSKMSKeyManager: KeyManager {
    public let settings: AWSKMSSettings
    private let http: HTTPClient

    public init(settings: AWSKMSSettings) {
        self.settings = settings
        // KMS answers are small JSON objects: 1 MiB is far above any of them.
        http = HTTPClient(tls: TLSOptions(caFile: settings.caFile, allowPlainHTTP: settings.allowPlainHTTP), connectTimeout: settings.retry.connectTimeout,
                          totalTimeout: settings.retry.requestTimeout, maxResponseBytes: HTTPClient.smallAnswerBytes)
    }

    public var reference: KMSReference { KMSReference(type: .aws, address: settings.endpoint, keyIdentifier: settings.keyID) }

    private func contextJSON(_ context: WrapContext) -> String {
        #"{"kmsfs:filesystem":"\#(SigV4.hex(context.filesystemUUID))"}"#
    }

    public func wrap(_ secret: KeyMaterial, context: WrapContext) throws -> WrappedKey {
        var encoded = secret.withUnsafeBytes { Base64.encode($0) }
        var body = Array(#"{"KeyId":"\#(jsonEscape(settings.keyID))","EncryptionContext":\#(contextJSON(context)),"Plaintext":""#.utf8)
            + encoded + Array(#""}"#.utf8)
        defer { wipe(&encoded); wipe(&body) }
        let answer = try call("Encrypt", body: body, key: settings.keyID)
        return try Self.envelope(from: answer)
    }

    public func unwrap(_ wrapped: WrappedKey, context: WrapContext) throws -> KeyMaterial {
        guard wrapped.provider == .aws else { throw KeyVaultError.providerMismatch(envelope: wrapped.provider.rawValue, configured: "aws") }
        // A disabled key or one pending deletion is named as such before the Decrypt
        // (AWS would answer DisabledException; emulators may not check).
        let info = try describe(wrapped.keyIdentifier)
        guard info.state == "Enabled" else {
            throw KeyVaultError.keyNotUsable(provider: "aws", key: info.arn, reason: "its state is \(info.state); \(info.state == "PendingDeletion" ? "cancel the deletion (aws kms cancel-key-deletion) and enable it" : "enable it (aws kms enable-key)") to mount")
        }
        let body = Array(#"{"KeyId":"\#(jsonEscape(wrapped.keyIdentifier))","EncryptionContext":\#(contextJSON(context)),"CiphertextBlob":"\#(Base64.encodeString(wrapped.ciphertext))"}"#.utf8)
        var answer = try call("Decrypt", body: body, key: wrapped.keyIdentifier)
        defer { answer.wipeBody() }
        guard let field = JSONSecretField.value(named: "Plaintext", in: answer.body), var plain = Base64.decode(field) else {
            throw KeyVaultError.kmsError(provider: "aws", reason: "Decrypt answer has no Plaintext")
        }
        return KeyMaterial(consuming: &plain)
    }

    /// ReEncrypt inside KMS (the plaintext never leaves it) to the key the configured
    /// alias or id names now, or to `newKeyIdentifier`.
    public func rewrap(_ wrapped: WrappedKey, context: WrapContext, newKeyIdentifier: String?) throws -> WrappedKey {
        guard wrapped.provider == .aws else { throw KeyVaultError.providerMismatch(envelope: wrapped.provider.rawValue, configured: "aws") }
        let destination = newKeyIdentifier ?? settings.keyID
        let ctx = contextJSON(context)
        let body = Array(#"{"CiphertextBlob":"\#(Base64.encodeString(wrapped.ciphertext))","SourceKeyId":"\#(jsonEscape(wrapped.keyIdentifier))","SourceEncryptionContext":\#(ctx),"DestinationKeyId":"\#(jsonEscape(destination))","DestinationEncryptionContext":\#(ctx)}"#.utf8)
        return try Self.envelope(from: call("ReEncrypt", body: body, key: destination))
    }

    public func health() throws -> KMSHealth {
        let info = try describe(settings.keyID)
        var details = ["key arn": info.arn, "key state": info.state, "key spec": info.spec, "key usage": info.usage,
                       "region": settings.region, "access key id": settings.credentials.accessKeyID]
        if let rotation = try? call("GetKeyRotationStatus", body: Array(#"{"KeyId":"\#(jsonEscape(info.arn))"}"#.utf8), key: info.arn),
           let object = try? JSONSerialization.jsonObject(with: Data(rotation.body)) as? [String: Any],
           let enabled = object["KeyRotationEnabled"] as? Bool {
            details["automatic rotation"] = enabled ? "enabled" : "disabled"
        }
        return KMSHealth(reachable: true, details: details)
    }

    /// What `kms set` proves before saving: the key exists, is an enabled
    /// symmetric encryption key, and a wrap/unwrap round trip works.
    public func validate() throws -> AWSKeyInfo {
        let info = try describe(settings.keyID)
        guard info.state == "Enabled" else {
            throw KeyVaultError.keyNotUsable(provider: "aws", key: info.arn, reason: "its state is \(info.state), not Enabled")
        }
        guard info.usage == "ENCRYPT_DECRYPT" || info.usage.isEmpty, info.spec == "SYMMETRIC_DEFAULT" || info.spec.isEmpty else {
            throw KeyVaultError.keyNotUsable(provider: "aws", key: info.arn, reason: "it is a \(info.spec) \(info.usage) key; kmsfs needs a symmetric (SYMMETRIC_DEFAULT) ENCRYPT_DECRYPT key")
        }
        try roundTripCheck()
        return info
    }

    public func describe(_ key: String) throws -> AWSKeyInfo {
        try Self.keyInfo(from: call("DescribeKey", body: Array(#"{"KeyId":"\#(jsonEscape(key))"}"#.utf8), key: key), key: key)
    }

    /// The facts of a DescribeKey answer (any bytes give facts or a KeyVaultError).
    static func keyInfo(from answer: HTTPResponse, key: String) throws -> AWSKeyInfo {
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any],
              let meta = object["KeyMetadata"] as? [String: Any] else {
            throw KeyVaultError.kmsError(provider: "aws", reason: "DescribeKey answer has no KeyMetadata")
        }
        return AWSKeyInfo(arn: meta["Arn"] as? String ?? key, state: meta["KeyState"] as? String ?? ((meta["Enabled"] as? Bool) == true ? "Enabled" : "Disabled"),
                          spec: meta["KeySpec"] as? String ?? meta["CustomerMasterKeySpec"] as? String ?? "",
                          usage: meta["KeyUsage"] as? String ?? "", manager: meta["KeyManager"] as? String ?? "")
    }

    /// The envelope from an Encrypt or ReEncrypt answer: the blob and the ARN of the key that made it.
    static func envelope(from answer: HTTPResponse) throws -> WrappedKey {
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any],
              let blob = (object["CiphertextBlob"] as? String).flatMap({ Base64.decode(Array($0.utf8)) }), let arn = object["KeyId"] as? String else {
            throw KeyVaultError.kmsError(provider: "aws", reason: "answer has no CiphertextBlob and KeyId")
        }
        return try WrappedKey(provider: .aws, keyIdentifier: arn, ciphertext: blob, parameters: ["context": Array("kmsfs:filesystem".utf8)])
            .checkedSize(provider: "aws")
    }

    /// One signed TrentService call with retries on throttling, 5xx and transient network failures.
    func call(_ action: String, body: [UInt8], key: String) throws -> HTTPResponse {
        guard let url = URLComponents(string: settings.endpoint), let scheme = url.scheme, let host = url.host else {
            throw KeyVaultError.kmsError(provider: "aws", reason: "bad endpoint \(settings.endpoint)")
        }
        let hostHeader = url.port.map { "\(host):\($0)" } ?? host
        let response = try settings.retry.send(http, provider: "aws kms", address: settings.endpoint,
                                               caHint: "give the endpoint's CA with --ca-cert", request: {
            let request = SigV4Request(method: "POST", scheme: scheme, host: hostHeader, path: "/",
                                       headers: [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "TrentService.\(action)")],
                                       payloadHash: SigV4.hex(SigV4.sha256(body)))
            let headers = SigV4.sign(request, credentials: settings.credentials, region: settings.region, service: "kms",
                                     amzDate: SigV4.amzDate(Int(time(nil))))
            return HTTPRequest(method: "POST", url: SigV4.url(for: request), headers: headers, body: body)
        }) { response in
            let (type, _) = Self.error(in: response)
            return response.status >= 500 || response.status == 429 || type == "ThrottlingException" ? "HTTP \(response.status) \(type)" : nil
        }
        guard response.status >= 300 else { return response }
        let (type, message) = Self.error(in: response)
        let what = "\(action) with key \(key)"
        switch type {
        case "AccessDeniedException", "AccessDenied":
            throw KeyVaultError.permissionDenied(provider: "aws kms", operation: what, reason: "the credentials' policy does not allow kms:\(action) (\(message))")
        case "NotFoundException":
            throw KeyVaultError.keyNotFound(provider: "aws kms", key: key, reason: message)
        case "DisabledException":
            throw KeyVaultError.keyNotUsable(provider: "aws kms", key: key, reason: "it is disabled; enable it (aws kms enable-key)")
        case "KMSInvalidStateException":
            throw KeyVaultError.keyNotUsable(provider: "aws kms", key: key, reason: "its state does not allow \(action) (pending deletion or import?): \(message)")
        case "InvalidCiphertextException", "IncorrectKeyException":
            throw KeyVaultError.unwrapDenied(provider: "aws kms", keyID: key)
        case "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature":
            throw KeyVaultError.credentialsRejected(provider: "aws kms", reason: "\(type): \(message.isEmpty ? "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN or the profile" : message)")
        default:
            throw KeyVaultError.kmsError(provider: "aws kms", reason: "\(what) answered HTTP \(response.status) \(type): \(message)")
        }
    }

    /// The error type and message of a KMS answer: JSON {"__type","message"}
    /// (AWS), or XML <Code>/<Message> (some emulators in auth mode).
    static func error(in response: HTTPResponse) -> (type: String, message: String) {
        if response.status < 300 { return ("", "") }
        if let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] {
            let raw = object["__type"] as? String ?? response.headers["x-amzn-errortype"] ?? ""
            let type = String(raw.split(separator: "#").last ?? "").split(separator: ":").first.map(String.init) ?? ""
            return (HTTPResponse.excerpt(type), HTTPResponse.excerpt(object["message"] as? String ?? object["Message"] as? String ?? ""))
        }
        let text = response.bodyText
        let code = XMLElements.first("Code", in: text)
        let type = code.isEmpty ? (response.headers["x-amzn-errortype"] ?? "HTTP\(response.status)") : code
        return (HTTPResponse.excerpt(type), HTTPResponse.excerpt(XMLElements.first("Message", in: text)))
    }
}

func jsonEscape(_ s: String) -> String {
    s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
}

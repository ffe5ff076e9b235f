internal import COpenSSL
import HTTPTransport

/// KMIP tags, enumerations and operations kmsfs uses (KMIP 1.2 specification, section 9.1.3).
enum KMIPTag {
    static let attribute: UInt32 = 0x420008, attributeName: UInt32 = 0x42000A, attributeValue: UInt32 = 0x42000B
    static let batchCount: UInt32 = 0x42000D, batchItem: UInt32 = 0x42000F, blockCipherMode: UInt32 = 0x420011
    static let cryptographicAlgorithm: UInt32 = 0x420028, cryptographicParameters: UInt32 = 0x42002B
    static let cryptographicUsageMask: UInt32 = 0x42002C, ivCounterNonce: UInt32 = 0x42003D
    static let operation: UInt32 = 0x42005C, paddingMethod: UInt32 = 0x42005F
    static let protocolVersion: UInt32 = 0x420069, protocolVersionMajor: UInt32 = 0x42006A, protocolVersionMinor: UInt32 = 0x42006B
    static let requestHeader: UInt32 = 0x420077, requestMessage: UInt32 = 0x420078, requestPayload: UInt32 = 0x420079
    static let responseHeader: UInt32 = 0x42007A, responseMessage: UInt32 = 0x42007B, responsePayload: UInt32 = 0x42007C
    static let resultMessage: UInt32 = 0x42007D, resultReason: UInt32 = 0x42007E, resultStatus: UInt32 = 0x42007F
    static let state: UInt32 = 0x42008D, uniqueIdentifier: UInt32 = 0x420094, data: UInt32 = 0x4200C2
}

enum KMIPOperation: UInt32 {
    case getAttributes = 0x0B, query = 0x18, discoverVersions = 0x1E, encrypt = 0x1F, decrypt = 0x20
}

/// The KMIP protocol versions kmsfs speaks, best first; 1.0 and 1.1 lack Encrypt/Decrypt.
let kmipVersions: [(major: Int32, minor: Int32)] = [(1, 4), (1, 3), (1, 2)]

/// Result reasons (KMIP 1.2 section 9.1.3.2.29) as words.
func kmipReason(_ code: UInt32) -> String {
    let names: [UInt32: String] = [
        0x01: "Item Not Found", 0x02: "Response Too Large", 0x03: "Authentication Not Successful", 0x04: "Invalid Message",
        0x05: "Operation Not Supported", 0x06: "Missing Data", 0x07: "Invalid Field", 0x08: "Feature Not Supported",
        0x09: "Operation Canceled By Requester", 0x0A: "Cryptographic Failure", 0x0B: "Illegal Operation",
        0x0C: "Permission Denied", 0x0D: "Object Archived", 0x0E: "Index Out Of Bounds",
        0x10: "Key Format Type Not Supported", 0x11: "Key Compression Type Not Supported", 0x12: "Encoding Option Error",
        0x13: "Key Value Not Present", 0x14: "Attestation Required", 0x15: "Attestation Failed", 0x16: "Sensitive",
        0x17: "Not Extractable", 0x18: "Object Already Exists", 0x100: "General Failure",
    ]
    return names[code] ?? "reason 0x\(String(code, radix: 16))"
}

/// KMIP object states (section 9.1.3.2.10).
func kmipState(_ code: UInt32) -> String {
    ["", "Pre-Active", "Active", "Deactivated", "Compromised", "Destroyed", "Destroyed Compromised"].indices.contains(Int(code))
        ? ["", "Pre-Active", "Active", "Deactivated", "Compromised", "Destroyed", "Destroyed Compromised"][Int(code)] : "state \(code)"
}

/// Where and how to reach a KMIP key.
public struct KMIPSettings: Sendable {
    public var host: String
    public var port: Int
    /// The key's Unique Identifier.
    public var keyUID: String
    public var tls: MutualTLS
    public var retry: RetryPolicy

    public init(host: String, port: Int, keyUID: String, tls: MutualTLS, retry: RetryPolicy = .standard) {
        self.host = host
        self.port = port
        self.keyUID = keyUID
        self.tls = tls
        self.retry = retry
    }

    public var address: String { "\(host):\(port)" }
}

/// A KMIP 1.2+ server as the KMS: Encrypt/Decrypt with an AES key (CBC with
/// PKCS#5 padding, which every server offers; the 16-byte IV is ours, random,
/// and kept in the envelope). The plaintext is the filesystem UUID followed by
/// the secret, so unwrap checks the binding; CBC is not authenticated, but a
/// tampered ciphertext yields a wrong UUID or fails the key-check value.
public struct KMIPKeyManager: KeyManager {
    public let settings: KMIPSettings

    public init(settings: KMIPSettings) { self.settings = settings }

    public var reference: KMSReference { KMSReference(type: .kmip, address: settings.address, keyIdentifier: settings.keyUID) }

    public func wrap(_ secret: KeyMaterial, context: WrapContext) throws -> WrappedKey {
        try wrap(secret, context: context, uid: settings.keyUID)
    }

    func wrap(_ secret: KeyMaterial, context: WrapContext, uid: String) throws -> WrappedKey {
        var iv = [UInt8](repeating: 0, count: 16)
        guard RAND_bytes(&iv, 16) == 1 else { throw KeyVaultError.crypto(operation: "RAND_bytes") }
        var plaintext = context.filesystemUUID
        secret.withUnsafeBytes { plaintext.append(contentsOf: $0) }
        defer { wipe(&plaintext) }
        var payload = try session { try $0.call(.encrypt, payload: cryptoPayload(uid: uid, data: plaintext, iv: iv)) }
        defer { payload.wipe() }
        guard let ciphertext = payload[KMIPTag.data]?.bytesValue, !ciphertext.isEmpty else {
            throw KeyVaultError.kmsError(provider: "kmip", reason: "Encrypt answer has no Data")
        }
        let usedIV = payload[KMIPTag.ivCounterNonce]?.bytesValue ?? iv
        return try WrappedKey(provider: .kmip, keyIdentifier: uid, ciphertext: ciphertext,
                              parameters: ["iv": usedIV, "mode": Array("AES-CBC-PKCS5".utf8)]).checkedSize(provider: "kmip")
    }

    public func unwrap(_ wrapped: WrappedKey, context: WrapContext) throws -> KeyMaterial {
        guard wrapped.provider == .kmip else { throw KeyVaultError.providerMismatch(envelope: wrapped.provider.rawValue, configured: "kmip") }
        guard let iv = wrapped.parameters["iv"], iv.count == 16 else { throw KeyVaultError.malformedEnvelope(reason: "kmip envelope lacks its 16-byte IV") }
        var payload = try session { try $0.call(.decrypt, payload: cryptoPayload(uid: wrapped.keyIdentifier, data: wrapped.ciphertext, iv: iv)) }
        var plaintext = payload[KMIPTag.data]?.bytesValue ?? []
        payload = TTLV(0, .structure([]))  // the plaintext buffer is now ours alone, so the wipe below reaches it
        defer { wipe(&plaintext) }
        guard !plaintext.isEmpty else { throw KeyVaultError.kmsError(provider: "kmip", reason: "Decrypt answer has no Data") }
        let n = context.filesystemUUID.count
        guard plaintext.count > n, CRYPTO_memcmp(plaintext, context.filesystemUUID, n) == 0 else {
            throw KeyVaultError.unwrapDenied(provider: "kmip", keyID: wrapped.keyIdentifier)
        }
        return plaintext.withUnsafeBytes { KeyMaterial(copying: UnsafeRawBufferPointer(rebasing: $0[n...])) }
    }

    /// KMIP has no re-key of ciphertexts: decrypt with the old key, encrypt with the new one.
    public func rewrap(_ wrapped: WrappedKey, context: WrapContext, newKeyIdentifier: String?) throws -> WrappedKey {
        guard let newKeyIdentifier else {
            throw KeyVaultError.unsupported(provider: "kmip", operation: "rewrap without --new-key-uid (create a new key in the KMS and give its UID)")
        }
        return try wrap(unwrap(wrapped, context: context), context: context, uid: newKeyIdentifier)
    }

    public func health() throws -> KMSHealth {
        let (version, attributes) = try session { s in (s.version, try s.keyAttributes(settings.keyUID)) }
        return KMSHealth(reachable: true, details: [
            "protocol version": "\(version.major).\(version.minor)",
            "key state": kmipState(attributes.state),
            "key usage mask": "0x" + String(attributes.usageMask, radix: 16),
        ])
    }

    /// What `kms set` proves: TLS handshake, KMIP 1.2+, the key is Active and
    /// allowed to Encrypt and Decrypt, and a round trip works.
    public func validate() throws -> (version: String, state: String) {
        let (version, attributes) = try session { s in (s.version, try s.keyAttributes(settings.keyUID)) }
        guard attributes.state == 2 else {
            throw KeyVaultError.keyNotUsable(provider: "kmip", key: settings.keyUID, reason: "its state is \(kmipState(attributes.state)), not Active")
        }
        guard attributes.usageMask & 0x0C == 0x0C else {
            throw KeyVaultError.keyNotUsable(provider: "kmip", key: settings.keyUID, reason: "its Cryptographic Usage Mask 0x\(String(attributes.usageMask, radix: 16)) does not allow both Encrypt and Decrypt")
        }
        try roundTripCheck()
        return ("\(version.major).\(version.minor)", kmipState(attributes.state))
    }

    private func cryptoPayload(uid: String, data: [UInt8], iv: [UInt8]) -> [TTLV] {
        [
            TTLV(KMIPTag.uniqueIdentifier, .text(uid)),
            TTLV(KMIPTag.cryptographicParameters, .structure([
                TTLV(KMIPTag.blockCipherMode, .enumeration(1)),        // CBC
                TTLV(KMIPTag.paddingMethod, .enumeration(3)),          // PKCS5
                TTLV(KMIPTag.cryptographicAlgorithm, .enumeration(3)), // AES
            ])),
            TTLV(KMIPTag.data, .bytes(data)),
            TTLV(KMIPTag.ivCounterNonce, .bytes(iv)),
        ]
    }

    /// Opens a connection (with retries while the server is unreachable), negotiates the version, runs `body`.
    private func session<T>(_ body: (KMIPSession) throws -> T) throws -> T {
        let connection: TLSConnection = try settings.retry.run(provider: "kmip", address: settings.address) {
            do {
                return .success(try TLSConnection(host: settings.host, port: settings.port, tls: settings.tls, timeout: settings.retry.requestTimeout))
            } catch let e as TransportError where e.isTransient {
                return .failure(RetryableFailure(reason: e.message))
            }
        }
        let session = KMIPSession(connection: connection, address: settings.address)
        try session.negotiate()
        return try body(session)
    }
}

/// Request/response exchange on one connection.
final class KMIPSession {
    let connection: TLSConnection
    let address: String
    var version: (major: Int32, minor: Int32) = (1, 2)

    init(connection: TLSConnection, address: String) {
        self.connection = connection
        self.address = address
    }

    /// Discover Versions: picks the best version both sides speak, 1.2 or later.
    func negotiate() throws {
        let offered = kmipVersions.map { TTLV(KMIPTag.protocolVersion, .structure([
            TTLV(KMIPTag.protocolVersionMajor, .integer($0.major)), TTLV(KMIPTag.protocolVersionMinor, .integer($0.minor)),
        ])) }
        let payload = try call(.discoverVersions, payload: offered)
        let versions = payload.all(KMIPTag.protocolVersion).compactMap { v -> (Int32, Int32)? in
            guard let major = v[KMIPTag.protocolVersionMajor]?.intValue, let minor = v[KMIPTag.protocolVersionMinor]?.intValue else { return nil }
            return (major, minor)
        }
        guard let best = kmipVersions.first(where: { ours in versions.contains { $0 == ours.major && $1 == ours.minor } }) else {
            let theirs = versions.map { "\($0.0).\($0.1)" }.joined(separator: ", ")
            throw KeyVaultError.kmsError(provider: "kmip", reason: "the server at \(address) speaks KMIP \(theirs.isEmpty ? "no version kmsfs offered" : theirs); kmsfs needs 1.2 or later (1.0 and 1.1 have no Encrypt/Decrypt)")
        }
        version = best
    }

    struct KeyAttributes {
        var state: UInt32
        var usageMask: UInt32
    }

    func keyAttributes(_ uid: String) throws -> KeyAttributes {
        let payload = try call(.getAttributes, payload: [
            TTLV(KMIPTag.uniqueIdentifier, .text(uid)),
            TTLV(KMIPTag.attributeName, .text("State")),
            TTLV(KMIPTag.attributeName, .text("Cryptographic Usage Mask")),
        ])
        var result = KeyAttributes(state: 0, usageMask: 0)
        for attribute in payload.all(KMIPTag.attribute) {
            switch attribute[KMIPTag.attributeName]?.textValue {
            case "State": result.state = attribute[KMIPTag.attributeValue]?.enumValue ?? 0
            case "Cryptographic Usage Mask": result.usageMask = attribute[KMIPTag.attributeValue]?.enumValue ?? 0
            default: break
            }
        }
        return result
    }

    /// Sends one batch item and returns its response payload, or throws the KMIP result as a KeyVaultError.
    func call(_ operation: KMIPOperation, payload: [TTLV]) throws -> TTLV {
        var request = TTLV(KMIPTag.requestMessage, .structure([
            TTLV(KMIPTag.requestHeader, .structure([
                TTLV(KMIPTag.protocolVersion, .structure([
                    TTLV(KMIPTag.protocolVersionMajor, .integer(version.major)),
                    TTLV(KMIPTag.protocolVersionMinor, .integer(version.minor)),
                ])),
                TTLV(KMIPTag.batchCount, .integer(1)),
            ])),
            TTLV(KMIPTag.batchItem, .structure([
                TTLV(KMIPTag.operation, .enumeration(operation.rawValue)),
                TTLV(KMIPTag.requestPayload, .structure(payload)),
            ])),
        ])).encoded()
        defer { wipe(&request) }
        try connection.write(request)
        let header = try connection.read(8)
        let length = try TTLV.messageLength(header: header)
        var body = try connection.read(length - 8)
        var message = header + body
        defer { wipe(&body); wipe(&message) }
        let response = try TTLV(decoding: message)
        guard response.tag == KMIPTag.responseMessage, let item = response[KMIPTag.batchItem] else {
            throw KeyVaultError.malformedKMIP(reason: "answer is not a Response Message with a Batch Item")
        }
        let status = item[KMIPTag.resultStatus]?.enumValue ?? 1
        guard status == 0 else {
            let reasonCode = item[KMIPTag.resultReason]?.enumValue ?? 0x100
            let message = item[KMIPTag.resultMessage]?.textValue ?? ""
            let reason = "\(kmipReason(reasonCode))\(message.isEmpty ? "" : " - \(message)")"
            let uid = payload.first { $0.tag == KMIPTag.uniqueIdentifier }?.textValue ?? ""
            switch reasonCode {
            case 0x01: throw KeyVaultError.keyNotFound(provider: "kmip", key: uid, reason: reason)
            case 0x03: throw KeyVaultError.credentialsRejected(provider: "kmip", reason: "\(reason); the client certificate needs extended key usage clientAuth and a CA the server trusts")
            case 0x0C where message.contains("state"):
                throw KeyVaultError.keyNotUsable(provider: "kmip", key: uid, reason: reason)
            case 0x0C: throw KeyVaultError.permissionDenied(provider: "kmip", operation: "\(operation) on key \(uid)", reason: reason)
            case 0x0A where operation == .decrypt, 0x100 where operation == .decrypt:
                throw KeyVaultError.unwrapDenied(provider: "kmip", keyID: uid)
            default: throw KeyVaultError.kmsError(provider: "kmip", reason: "\(operation) answered \(reason)")
            }
        }
        return item[KMIPTag.responsePayload] ?? TTLV(KMIPTag.responsePayload, .structure([]))
    }
}

extension TTLV {
    /// Best-effort wipe of the byte strings (decrypted data) in this item: the
    /// value is taken out first so the buffer is uniquely owned when overwritten.
    mutating func wipe() {
        let current = value
        value = .structure([])
        switch current {
        case .bytes(let b):
            var owned = b
            KeyVault.wipe(&owned)
        case .structure(let items):
            for var item in items { item.wipe() }
        default: break
        }
    }
}

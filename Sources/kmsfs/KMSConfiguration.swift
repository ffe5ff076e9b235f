import Foundation
import HTTPTransport
import KeyVault
#if canImport(Glibc)
import Glibc
#endif

/// How to reach one KMS: a KMS passkey's settings, kept in the home's
/// kms.json (see PasskeyRegistry). A Vault token is kept only there, sealed
/// (AES-256-GCM) with the home's local key so kms.json alone does not give it
/// away; it is never in a superblock, a log or `kms` output.
struct KMSConfiguration: Codable, Equatable {
    var type: KMSType
    var address: String
    var keyIdentifier: String
    var namespace: String?
    var transitMount: String?
    var caCert: String?
    var clientCert: String?
    var clientKey: String?
    /// The Vault token, sealed with the local key (base64 of a wrapped-key envelope).
    var sealedToken: String?
    /// AWS: the region to sign for, and the shared-credentials profile to read.
    var region: String?
    var profile: String?
    /// AWS credentials, sealed like the token; only with `set aws --store-credentials`.
    var sealedCredentials: String?
    /// KMIP: the key UIDs this home used before `kms rewrap --new-key-uid`
    /// (older snapshot bundles are wrapped with them).
    var previousKeyIdentifiers: [String]?
    /// `kms set --insecure-http`: plain http:// to a host that is not a loopback address.
    var insecureHTTP: Bool?
    /// Vault: the KV version 2 mount that also holds each filesystem's rollback anchor.
    var anchorMount: String?

    /// The configured key and the ones it replaced.
    var knownKeyIdentifiers: Set<String> { Set([keyIdentifier] + (previousKeyIdentifiers ?? [])) }

    static let local = KMSConfiguration(type: .local, address: "", keyIdentifier: "keyfile")

    /// The active KMS passkey's configuration (`.local` when there is none).
    static func load(_ home: Home) throws -> KMSConfiguration {
        try PasskeyRegistry.load(home).kmsConfiguration
    }

    /// A KeyManager for this configuration; for local, the home's key file.
    /// `quick`: one attempt without retries, when another passkey can answer instead.
    func keyManager(home: Home, quick: Bool = false) throws -> any KeyManager {
        switch type {
        case .local:
            return LocalKeyManager(source: .keyFile(path: home.localKey))
        case .vault:
            guard let sealedToken else { throw UserFacingError("the vault configuration in \(home.kmsConfig) has no token; run 'kmsfs security kms set' again", exitCode: ExitCodes.badConfig) }
            let token = try TokenSeal.unseal(sealedToken, home: home)
            var settings = VaultSettings(address: address, keyName: keyIdentifier, namespace: namespace, transitMount: transitMount ?? "transit",
                                         caFile: caCert, token: token, retry: Self.retryPolicy(quick: quick))
            settings.allowPlainHTTP = insecureHTTP == true
            return VaultKeyManager(settings: settings)
        case .aws:
            let credentials = try awsCredentials(home: home)
            let endpoint = referenceAddress
            var settings = AWSKMSSettings(endpoint: endpoint, region: region ?? address, keyID: keyIdentifier, credentials: credentials,
                                          caFile: caCert, retry: Self.retryPolicy(quick: quick))
            settings.allowPlainHTTP = insecureHTTP == true
            return AWSKMSKeyManager(settings: settings)
        case .kmip:
            guard let clientCert, let clientKey, let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
                throw UserFacingError("the kmip configuration in \(home.kmsConfig) is incomplete; run 'kmsfs security kms set' again", exitCode: ExitCodes.badConfig)
            }
            return KMIPKeyManager(settings: KMIPSettings(host: String(address[..<colon]), port: port, keyUID: keyIdentifier,
                                                         tls: MutualTLS(clientCertificate: clientCert, clientKey: clientKey, caFile: caCert),
                                                         retry: Self.retryPolicy(quick: quick)))
        }
    }

    /// Stored credentials if the user asked for that, else the AWS environment or profile.
    func awsCredentials(home: Home) throws -> AWSCredentials {
        if let sealedCredentials {
            let material = try TokenSeal.unseal(sealedCredentials, home: home)
            let fields = material.withUnsafeBytes { String(decoding: $0, as: UTF8.self) }.split(separator: "\n", omittingEmptySubsequences: false)
            guard fields.count == 3 else { throw UserFacingError("the AWS credentials in \(home.kmsConfig) are damaged; run 'kmsfs security kms set' again", exitCode: ExitCodes.badConfig) }
            return AWSCredentials(accessKeyID: String(fields[0]), secretAccessKey: String(fields[1]), sessionToken: fields[2].isEmpty ? nil : String(fields[2]))
        }
        return try AWSCredentialSource.resolve(profile: profile)
    }

    /// Retry and timeout policy; $KMSFS_KMS_ATTEMPTS and $KMSFS_KMS_TIMEOUT
    /// (seconds per request) override it, e.g. for fast failure in scripts.
    static func retryPolicy(quick: Bool = false) -> RetryPolicy {
        let env = ProcessInfo.processInfo.environment
        var policy = RetryPolicy.standard
        if quick { policy.attempts = 1 }
        if !quick, let a = env["KMSFS_KMS_ATTEMPTS"].flatMap(Int.init), a >= 1 { policy.attempts = a }
        if let t = env["KMSFS_KMS_TIMEOUT"].flatMap(Double.init), t > 0 {
            policy.requestTimeout = t
            policy.connectTimeout = min(policy.connectTimeout, t)
            policy.initialDelay = min(policy.initialDelay, t / 4)
        }
        return policy
    }

    /// The address its KeyManager names in a keyslot: the endpoint URL for aws, else the address.
    var referenceAddress: String {
        type == .aws && !address.contains("://") ? AWSKMSSettings.endpoint(region: address) : address
    }

    /// A one-line description: "vault https://vault:8200 key kmsfs-key".
    var summary: String {
        type == .local ? "the local key file" : "\(type.rawValue) \(address) key \(keyIdentifier)"
    }
}

/// Seals a KMS credential with the home's local key file, bound to its purpose.
enum TokenSeal {
    private static let context = WrapContext(filesystemUUID: Array("kmsfs-kms-token1".utf8))

    static func seal(_ token: KeyMaterial, home: Home) throws -> String {
        try home.ensureLocalKey()
        let wrapped = try LocalKeyManager(source: .keyFile(path: home.localKey)).wrap(token, context: context)
        return Data(wrapped.encoded()).base64EncodedString()
    }

    static func unseal(_ sealed: String, home: Home) throws -> KeyMaterial {
        guard let data = Data(base64Encoded: sealed) else {
            throw UserFacingError("the KMS token in \(home.kmsConfig) is damaged; run 'kmsfs security kms set' again", exitCode: ExitCodes.badConfig)
        }
        let envelope = try WrappedKey(decoding: Array(data))
        do {
            return try LocalKeyManager(source: .keyFile(path: home.localKey)).unwrap(envelope, context: context)
        } catch KeyVaultError.unwrapDenied {
            throw UserFacingError("the KMS token in \(home.kmsConfig) cannot be unsealed with \(home.localKey); run 'kmsfs security kms set' again", exitCode: ExitCodes.badConfig)
        }
    }
}

/// Whole-file replacement that never leaves a torn file: temp, fsync, rename, fsync dir.
/// The temporary name is random and created O_EXCL|O_NOFOLLOW (the directory
/// may be shared, e.g. a metrics textfile directory); `mode` is set exactly,
/// whatever the umask.
enum AtomicFile {
    static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
        let temp = path + ".tmp." + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw UserFacingError("cannot write \(temp): \(String(cString: strerror(errno)))", exitCode: ExitCodes.io) }
        fchmod(fd, mode)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw UserFacingError("cannot write \(path): \(reason)", exitCode: ExitCodes.io)
        }
        let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 { fsync(dir); close(dir) }
    }
}

import ArgumentParser
import Foundation
import HTTPTransport
import KeyVault

/// The options of a KMS, shared by `kms set` and `passkey add` (WEKA's
/// parameter rules, checked by KMSParameters).
struct KMSSettingsOptions: ParsableArguments {
    @Option(help: "Vault API token (prefer --token-file or $VAULT_TOKEN: argv is visible to other users).") var token: String?
    @Option(help: "File holding the Vault token.") var tokenFile: String?
    @Option(help: "Vault namespace.") var namespace: String?
    @Option(help: "Client certificate PEM (kmip).") var clientCert: String?
    @Option(help: "Client key PEM (kmip).") var clientKey: String?
    @Option(help: "CA certificate PEM that signs the KMS server's certificate.") var caCert: String?
    @Option(help: "Where the transit engine is mounted (vault; default transit).") var transitMount: String?
    @Option(help: "Also keep each filesystem's rollback anchor in this KV version 2 mount, written with check-and-set (vault; the token needs create, read and update on <mount>/data/kmsfs/anchors/*).")
    var anchorMount: String?
    @Option(help: "AWS shared-credentials profile (aws; default: the environment, then $AWS_PROFILE or 'default').") var profile: String?
    @Option(help: "AWS region to sign for when ADDRESS is an endpoint URL (aws; default $AWS_REGION or the profile's).") var region: String?
    @Flag(help: "Store the AWS credentials in the home's kms.json, sealed with the local key (aws; by default they are read from the environment or profile at each use).")
    var storeCredentials = false
    @Flag(help: "Allow a plain http:// ADDRESS that is not a loopback address (the answers carry the master secret; use https).")
    var insecureHttp = false

    /// The checked parameters (nothing written or asked yet). `previous`: the
    /// KMS this one replaces (KMIP keeps its earlier key UIDs).
    func validated(type: String, address: String, keyIdentifier: String, previous: KMSConfiguration?) throws -> Validated {
        guard token == nil || tokenFile == nil else { throw UserFacingError("give --token or --token-file, not both", exitCode: ExitCodes.usage) }
        let envToken = ProcessInfo.processInfo.environment["VAULT_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let fromArguments = token != nil || tokenFile != nil
        var config = try KMSParameters.validate(type: type, address: address, keyIdentifier: keyIdentifier,
                                                tokenGiven: fromArguments || envToken != nil, tokenFromArguments: fromArguments,
                                                namespace: namespace, caCert: caCert, clientCert: clientCert,
                                                clientKey: clientKey, transitMount: transitMount, anchorMount: anchorMount)
        if let host = PlainHTTPPolicy.refusedHost(config.address, allowPlainHTTP: false) {
            guard insecureHttp else {
                throw UserFacingError("refusing plain http:// to \(host): the KMS answers carry the master secret; use https, or --insecure-http",
                                      exitCode: ExitCodes.usage)
            }
            config.insecureHTTP = true
            writeStderr("kmsfs: warning: \(config.address) is plain HTTP: the token and key material cross the network unencrypted\n")
        }
        if config.type == .kmip, let previous, previous.type == .kmip {
            let earlier = previous.knownKeyIdentifiers.subtracting([config.keyIdentifier]).sorted()
            config.previousKeyIdentifiers = earlier.isEmpty ? nil : earlier
        }
        let token = try readToken(envToken: envToken, type: config.type)
        if config.type != .aws, profile != nil || region != nil || storeCredentials {
            throw UserFacingError("--profile, --region and --store-credentials are only for aws", exitCode: ExitCodes.usage)
        }
        if config.type == .aws {
            config.profile = profile
            config.region = region ?? (config.address.contains("://") ? AWSCredentialSource.region(profile: profile) ?? "us-east-1" : config.address)
        }
        return Validated(config: config, token: token, storeCredentials: storeCredentials, profile: profile)
    }

    /// Checked parameters, before the credentials are sealed.
    struct Validated {
        fileprivate var config: KMSConfiguration
        fileprivate let token: KeyMaterial?
        fileprivate let storeCredentials: Bool
        fileprivate let profile: String?
        var type: KMSType { config.type }
    }

    /// Seals the credentials into the configuration (with the home's local
    /// key) and proves the KMS with a wrap/unwrap round trip (and, for Vault,
    /// the token and the anchor mount). Under the home lock.
    static func configure(_ validated: Validated, home: Home) throws -> (KMSConfiguration, any KeyManager) {
        var config = validated.config
        if let token = validated.token { config.sealedToken = try TokenSeal.seal(token, home: home) }
        if config.type == .aws && validated.storeCredentials {
            let credentials = try AWSCredentialSource.resolve(profile: validated.profile)
            var bytes = Array("\(credentials.accessKeyID)\n\(credentials.secretAccessKey)\n\(credentials.sessionToken ?? "")".utf8)
            config.sealedCredentials = try TokenSeal.seal(KeyMaterial(consuming: &bytes), home: home)
        }
        let manager = try config.keyManager(home: home)
        try Self.prove(manager, config: config)
        return (config, manager)
    }

    /// The checks `kms set` prints: token, key, round trip.
    private static func prove(_ manager: any KeyManager, config: KMSConfiguration) throws {
        if let vault = manager as? VaultKeyManager {
            let (tokenInfo, keyInfo) = try vault.validate()
            if !tokenInfo.renewable && tokenInfo.ttl > 0 {
                writeStderr("kmsfs: warning: the token is not renewable and expires in \(tokenInfo.ttl) s; use a periodic token from a token role\n")
            }
            writeStdout("vault \(config.address): token valid (ttl \(tokenInfo.ttl) s), key \(config.keyIdentifier) version \(keyInfo.latestVersion), round trip ok\n")
            if let mount = config.anchorMount {
                // The policy must let the token read there (writes are checked at the first mount).
                _ = try vault.anchorStore(mount: mount).read("probe")
                writeStdout("vault \(config.address): rollback anchors in \(mount)/kmsfs/anchors/ readable\n")
            }
        } else if let kmip = manager as? KMIPKeyManager {
            let (version, state) = try kmip.validate()
            writeStdout("kmip \(config.address): TLS ok, KMIP \(version), key \(config.keyIdentifier) \(state), round trip ok\n")
        } else if let aws = manager as? AWSKMSKeyManager {
            let info = try aws.validate()
            writeStdout("aws kms \(aws.settings.endpoint) (\(aws.settings.region)): key \(info.arn) \(info.state), round trip ok\n")
        } else {
            try manager.roundTripCheck()
        }
    }

    private func readToken(envToken: String?, type: KMSType) throws -> KeyMaterial? {
        guard type == .vault else { return nil }
        var bytes: [UInt8]
        if let token { bytes = Array(token.utf8) } else if let tokenFile {
            guard let data = SecretInput.readSmallFile(tokenFile) else {
                throw UserFacingError("cannot read token file \(tokenFile)", exitCode: ExitCodes.usage)
            }
            bytes = data
        } else { bytes = Array((envToken ?? "").utf8) }
        while let last = bytes.last, last == 0x0a || last == 0x0d || last == 0x20 { bytes.removeLast() }
        guard !bytes.isEmpty, bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw UserFacingError("the vault token is empty or has characters a token cannot have", exitCode: ExitCodes.usage)
        }
        return KeyMaterial(consuming: &bytes)
    }
}

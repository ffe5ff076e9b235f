import ArgumentParser
import Foundation
import HTTPTransport
import KeyVault
import MetaStore

/// `kmsfs security kms [set|unset|rewrap]`, after WEKA's `weka security kms`; `kmsfs security events`.
struct SecurityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "security",
        abstract: "Key management settings.",
        subcommands: [KMSCommand.self, EventsCommand.self]
    )
}

struct KMSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kms",
        abstract: "Show, set, unset the KMS that wraps filesystem keys, or rewrap them after a key rotation.",
        subcommands: [Show.self, Set.self, Unset.self, Rewrap.self],
        defaultSubcommand: Show.self
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the KMS configuration, the key's versions, the token's TTL and whether the KMS answers (the default).")

        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print JSON for scripts.") var json = false

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                let config = try KMSConfiguration.load(home)
                var fields: [(String, String)] = [("type", config.type.rawValue)]
                if config.type == .local {
                    fields.append(("key file", home.localKey))
                } else {
                    fields.append(("address", config.address))
                    fields.append(("key", config.keyIdentifier))
                    if let ns = config.namespace { fields.append(("namespace", ns)) }
                    if config.type == .vault { fields.append(("transit mount", config.transitMount ?? "transit")) }
                    if let mount = config.anchorMount { fields.append(("anchor mount", mount)) }
                    if let ca = config.caCert { fields.append(("ca cert", ca)) }
                    if let cert = config.clientCert { fields.append(("client cert", cert)) }
                }
                var reachable = false
                if config.type == .local && !FileManager.default.fileExists(atPath: home.localKey) {
                    // A fresh home: the key file is made by the first `fs create`.
                    reachable = true
                    fields.append(("key file state", "not created yet"))
                } else { do {
                    let health = try config.keyManager(home: home).health()
                    reachable = health.reachable
                    fields += health.details.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
                } catch {
                    fields.append(("error", UserFacingError.from(error).message))
                } }
                fields.insert(("reachable", reachable ? "yes" : "no"), at: 1)
                let users = try KeyRewrap(home: home).filesystems().filter { $0.envelope.provider == config.type }.map(\.name)
                fields.append(("filesystems", users.joined(separator: ",")))
                if json {
                    var object = [String: Any]()
                    for (k, v) in fields { object[k.replacingOccurrences(of: " ", with: "_")] = v }
                    object["reachable"] = reachable
                    object["filesystems"] = users
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
                    writeStdout(String(decoding: data, as: UTF8.self) + "\n")
                } else {
                    let width = fields.map(\.0.count).max() ?? 0
                    for (k, v) in fields { writeStdout(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v + "\n") }
                }
                if !reachable { throw ExitCode(ExitCodes.kmsUnreachable) }
            }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Configure the KMS. Checks it first, then rewraps every existing filesystem key to it (all or nothing).",
            discussion: """
            vault: ADDRESS is a URL, KEY-IDENTIFIER a transit key name, a token is mandatory (--token-file or $VAULT_TOKEN keep it out of argv). \
            --ca-cert trusts a private CA (WEKA forbids it for vault; real deployments need it).
            kmip: ADDRESS is hostname:port, KEY-IDENTIFIER a key UID, --client-cert and --client-key are mandatory, --ca-cert optional.
            """
        )

        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "vault or kmip.") var type: String
        @Argument(help: "URL for vault, hostname:port for kmip.") var address: String
        @Argument(help: "Vault key name or KMIP key UID.") var keyIdentifier: String
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

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
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
                let previous = try KMSConfiguration.load(home)
                if config.type == .kmip, previous.type == .kmip {
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
                let lock = try HomeLock(home)
                if let token { config.sealedToken = try TokenSeal.seal(token, home: home) }
                if config.type == .aws && storeCredentials {
                    let credentials = try AWSCredentialSource.resolve(profile: profile)
                    var bytes = Array("\(credentials.accessKeyID)\n\(credentials.secretAccessKey)\n\(credentials.sessionToken ?? "")".utf8)
                    config.sealedCredentials = try TokenSeal.seal(KeyMaterial(consuming: &bytes), home: home)
                }
                let manager = try config.keyManager(home: home)
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
                var rewrap = KeyRewrap(home: home)
                for fs in try rewrap.filesystems() {
                    if fs.envelope.provider == config.type && fs.envelope.keyIdentifier == config.keyIdentifier
                        && fs.superblock.kms.address == config.address { continue }
                    if fs.envelope.provider == .local && fs.envelope.keyIdentifier == "passphrase" {
                        rewrap.skip(fs.name, reason: "its key is protected by a passphrase, not by the KMS")
                        continue
                    }
                    let source = try Unlock.keyManager(for: fs.envelope, home: home, passphrase: nil)
                    try rewrap.plan(name: fs.name, store: fs.store, superblock: fs.superblock, manager: manager) { envelope in
                        let context = WrapContext(filesystemUUID: fs.superblock.uuid)
                        return try manager.wrap(source.unwrap(envelope, context: context), context: context)
                    }
                }
                try rewrap.commit(configuration: config, reason: "kms set")
                withExtendedLifetime(lock) {}
                for change in rewrap.changes { writeStdout("rewrapped filesystem \(change.name): \(change.old.kms.type) -> \(config.summary)\n") }
                for (name, reason) in rewrap.skipped { writeStdout("left filesystem \(name) as it is: \(reason)\n") }
                writeStdout("KMS set: new filesystem keys are wrapped by \(config.summary)\n")
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

    struct Unset: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "unset",
            abstract: "Remove the KMS configuration; refused while filesystems use it unless --allow-downgrade rewraps their keys with the local key."
        )

        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Rewrap the keys of filesystems that use the KMS with the local key file (weaker protection).") var allowDowngrade = false

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                let lock = try HomeLock(home)
                let config = try KMSConfiguration.load(home)
                guard config.type != .local else {
                    writeStdout("no KMS is configured; filesystem keys are wrapped by the local key file\n")
                    return
                }
                var rewrap = KeyRewrap(home: home)
                let users = try rewrap.filesystems().filter { $0.envelope.provider != .local }
                if !users.isEmpty && !allowDowngrade {
                    throw UserFacingError("filesystems use the KMS: \(users.map(\.name).joined(separator: ", ")); rewrap them first or give --allow-downgrade",
                                          exitCode: ExitCodes.usage)
                }
                if !users.isEmpty {
                    try home.ensureLocalKey()
                    let source = try config.keyManager(home: home)
                    let local = LocalKeyManager(source: .keyFile(path: home.localKey))
                    for fs in users {
                        try rewrap.plan(name: fs.name, store: fs.store, superblock: fs.superblock, manager: local) { envelope in
                            let context = WrapContext(filesystemUUID: fs.superblock.uuid)
                            return try local.wrap(source.unwrap(envelope, context: context), context: context)
                        }
                    }
                }
                try rewrap.commit(configuration: .local, reason: "kms unset")
                withExtendedLifetime(lock) {}
                for change in rewrap.changes {
                    writeStderr("kmsfs: warning: filesystem \(change.name) is now protected only by the local key file \(home.localKey)\n")
                }
                writeStdout("KMS unset: new filesystem keys are wrapped by the local key file\n")
            }
        }
    }

    struct Rewrap: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rewrap",
            abstract: "Rewrap every filesystem key after the KMS key was rotated (vault), or to a new key (kmip: --new-key-uid, mandatory).",
            discussion: "Snapshot bundles exported earlier keep the key wrapped as it was then: keep old key versions (vault) or the old key (kmip) in the KMS."
        )

        @OptionGroup var homeOptions: HomeOptions
        @Option(help: "The new key's UID (kmip only; mandatory there).") var newKeyUid: String?

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                let lock = try HomeLock(home)
                var config = try KMSConfiguration.load(home)
                switch config.type {
                case .local:
                    throw UserFacingError("no KMS is configured; 'kmsfs security kms set' first", exitCode: ExitCodes.usage)
                case .vault where newKeyUid != nil:
                    throw UserFacingError("--new-key-uid is not allowed for vault: rotate the key in Vault (transit/keys/<key>/rotate), then rewrap without it", exitCode: ExitCodes.usage)
                case .kmip where newKeyUid == nil:
                    throw UserFacingError("--new-key-uid is mandatory for kmip: create a new key in the KMS and give its UID", exitCode: ExitCodes.usage)
                default: break
                }
                let manager = try config.keyManager(home: home)
                if let newKeyUid, newKeyUid != config.keyIdentifier {
                    config.previousKeyIdentifiers = (config.previousKeyIdentifiers ?? []).filter { $0 != newKeyUid } + [config.keyIdentifier]
                    config.keyIdentifier = newKeyUid
                }
                let target = newKeyUid == nil ? manager : try config.keyManager(home: home)
                var rewrap = KeyRewrap(home: home)
                for fs in try rewrap.filesystems() where fs.envelope.provider == config.type {
                    try rewrap.plan(name: fs.name, store: fs.store, superblock: fs.superblock, manager: target) { envelope in
                        try manager.rewrap(envelope, context: WrapContext(filesystemUUID: fs.superblock.uuid), newKeyIdentifier: newKeyUid)
                    }
                }
                try rewrap.commit(configuration: newKeyUid == nil ? nil : config, reason: "kms rewrap")
                withExtendedLifetime(lock) {}
                for change in rewrap.changes {
                    writeStdout("rewrapped filesystem \(change.name): key \(change.old.kms.keyIdentifier) v\(change.old.kms.keyVersion) -> \(change.new.kms.keyIdentifier) v\(change.new.kms.keyVersion)\n")
                }
                writeStdout("rewrapped \(rewrap.changes.count) filesystem key(s)\n")
                if newKeyUid != nil {
                    writeStdout("keep the old key in the KMS: snapshot bundles exported before this rewrap still need it\n")
                }
            }
        }
    }
}

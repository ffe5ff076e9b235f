import ArgumentParser
import Foundation
import HTTPTransport
import KeyVault
import MetaStore

/// `kmsfs security kms [set|unset|rewrap]`, after WEKA's `weka security kms`;
/// `kmsfs security passkey`, after Kasten's passkeys; `kmsfs security events`.
struct SecurityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "security",
        abstract: "Key management settings.",
        subcommands: [KMSCommand.self, PasskeyCommand.self, EventsCommand.self]
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
                let role = try PasskeyRegistry.load(home).kmsRole
                let users = try KeyRewrap(home: home).filesystems().filter { fs in role.map { fs.superblock.keyslots.contains(where: $0.owns) } ?? false }.map(\.name)
                fields.append(("filesystems", users.joined(separator: ",")))
                if json {
                    var object = [String: Any]()
                    for (k, v) in fields { object[k.replacingOccurrences(of: " ", with: "_")] = v }
                    object["reachable"] = reachable
                    object["filesystems"] = users
                    try writeJSON(object)
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
            The KMS replaces the in-use KMS passkey (or the local key file): its keyslot in every filesystem moves to the new KMS.
            """
        )

        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "vault, kmip or aws.") var type: String
        @Argument(help: "URL for vault, hostname:port for kmip, region or endpoint for aws.") var address: String
        @Argument(help: "Vault key name, KMIP key UID or AWS key id, ARN or alias.") var keyIdentifier: String
        @OptionGroup var settings: KMSSettingsOptions
        @Option(help: "A recovery passphrase that unlocks the filesystems, when no other passkey can (it is not the new KMS's).")
        var unlockPassphraseFile: String?

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                let validated = try settings.validated(type: type, address: address, keyIdentifier: keyIdentifier,
                                                       previous: try PasskeyRegistry.load(home).kmsRole?.kms)
                let lock = try HomeLock(home)
                var registry = try PasskeyRegistry.load(home)
                let role = registry.kmsRole
                guard registry.thresholdValue < 2 else {
                    throw UserFacingError("the KMS passkeys hold key shares: 'kmsfs security passkey add' the new KMS, then 'passkey remove' the old one",
                                          exitCode: ExitCodes.usage)
                }
                let (config, manager) = try KMSSettingsOptions.configure(validated, home: home)
                let name = role?.type.isKMS == true ? role!.name : registry.freeName("kms")
                let passkey = Passkey(name: name, type: PasskeyType(rawValue: config.type.rawValue)!, created: UInt64(time(nil)), kms: config)
                if let role { registry.replace(role.name, with: passkey) } else {
                    registry.passkeys.append(passkey)
                    registry.inUse = name
                }
                var rewrap = KeyRewrap(home: home)
                let unlockPassphrase = try SecretInput.passphrase(file: unlockPassphraseFile)
                for fs in try rewrap.unlockAll(purpose: "kms set", passphrase: unlockPassphrase) {
                    let old = fs.unlocked.superblock
                    // Already there (a second run, e.g. after a crash): only slots of the old KMS still go.
                    let owned = role.map { r in old.keyslots.filter(r.owns) } ?? []
                    let current = owned.filter { $0.kms.type == config.type.rawValue && $0.kms.keyIdentifier == config.keyIdentifier && $0.kms.address == config.referenceAddress }
                    var new = old
                    new.keyslots.removeAll { slot in owned.contains(slot) && !current.contains(slot) }
                    if current.isEmpty {
                        new.keyslots.insert(try KeyslotWriter.slot(for: passkey, secret: fs.unlocked.master, share: 0, uuid: old.uuid, home: home) {
                            _ = try Unlock.keys(from: $0, superblock: old)
                        }, at: 0)
                    }
                    rewrap.plan(name: fs.name, store: fs.store, old: old, new: new)
                }
                withExtendedLifetime(manager) {}
                try rewrap.commit(registry: registry, reason: "kms set", order: .transitional)
                withExtendedLifetime(lock) {}
                for change in rewrap.changes { writeStdout("rewrapped filesystem \(change.name): \(role?.summary ?? "local key file") -> \(config.summary)\n") }
                for (name, reason) in rewrap.skipped { writeStdout("left filesystem \(name) as it is: \(reason)\n") }
                writeStdout("KMS set: new filesystem keys are wrapped by \(config.summary) (passkey \(name))\n")
            }
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
                var registry = try PasskeyRegistry.load(home)
                guard let role = registry.kmsRole, role.type.isKMS else {
                    writeStdout("no KMS is configured; filesystem keys are wrapped by the local key file\n")
                    return
                }
                guard registry.thresholdValue < 2 else {
                    throw UserFacingError("the KMS passkeys hold key shares; 'kmsfs security passkey threshold 1' first", exitCode: ExitCodes.usage)
                }
                var rewrap = KeyRewrap(home: home)
                let users = try rewrap.filesystems().filter { $0.superblock.keyslots.contains(where: role.owns) }
                if !users.isEmpty && !allowDowngrade {
                    throw UserFacingError("filesystems use the KMS: \(users.map(\.name).joined(separator: ", ")); rewrap them first or give --allow-downgrade",
                                          exitCode: ExitCodes.usage)
                }
                let local = registry.passkeys.first { $0.type == .local } ?? Passkey(name: registry.freeName("local"), type: .local, created: UInt64(time(nil)))
                registry.passkeys.removeAll { $0.name == local.name }
                registry.replace(role.name, with: local)
                if !users.isEmpty { try home.ensureLocalKey() }
                for fs in try rewrap.unlockAll(purpose: "kms unset", where: { $0.keyslots.contains(where: role.owns) }) {
                    let old = fs.unlocked.superblock
                    var new = old
                    new.keyslots.removeAll { role.owns($0) || local.owns($0) }
                    new.keyslots.insert(try KeyslotWriter.slot(for: local, secret: fs.unlocked.master, share: 0, uuid: old.uuid, home: home) {
                        _ = try Unlock.keys(from: $0, superblock: old)
                    }, at: 0)
                    rewrap.plan(name: fs.name, store: fs.store, old: old, new: new)
                }
                try rewrap.commit(registry: registry, reason: "kms unset", order: .transitional)
                withExtendedLifetime(lock) {}
                for change in rewrap.changes {
                    let also = change.new.keyslots.count > 1 ? "by the local key file \(home.localKey) instead of the KMS" : "only by the local key file \(home.localKey)"
                    writeStderr("kmsfs: warning: filesystem \(change.name) is now protected \(also)\n")
                }
                writeStdout("KMS unset: new filesystem keys are wrapped by the local key file\n")
            }
        }
    }

    struct Rewrap: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rewrap",
            abstract: "Rewrap every KMS passkey's keyslots after a key rotation (vault, aws), or the in-use KMS to a new key (kmip: --new-key-uid, mandatory).",
            discussion: "Snapshot bundles exported earlier keep the key wrapped as it was then: keep old key versions (vault) or the old key (kmip) in the KMS."
        )

        @OptionGroup var homeOptions: HomeOptions
        @Option(help: "The new key's UID (kmip only; mandatory there).") var newKeyUid: String?

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                let lock = try HomeLock(home)
                var registry = try PasskeyRegistry.load(home)
                guard let role = registry.kmsRole, role.type.isKMS, var config = role.kms else {
                    throw UserFacingError("no KMS is configured; 'kmsfs security kms set' first", exitCode: ExitCodes.usage)
                }
                switch config.type {
                case .vault where newKeyUid != nil:
                    throw UserFacingError("--new-key-uid is not allowed for vault: rotate the key in Vault (transit/keys/<key>/rotate), then rewrap without it", exitCode: ExitCodes.usage)
                case .kmip where newKeyUid == nil:
                    throw UserFacingError("--new-key-uid is mandatory for kmip: create a new key in the KMS and give its UID", exitCode: ExitCodes.usage)
                default: break
                }
                if let newKeyUid, newKeyUid != config.keyIdentifier {
                    config.previousKeyIdentifiers = (config.previousKeyIdentifiers ?? []).filter { $0 != newKeyUid } + [config.keyIdentifier]
                    config.keyIdentifier = newKeyUid
                    var updated = role
                    updated.kms = config
                    registry.replace(role.name, with: updated)
                }
                var rewrap = KeyRewrap(home: home)
                var left: [String] = []
                var planned: [String: Superblock] = [:]
                let filesystems = try rewrap.filesystems()
                for passkey in registry.unlockOrder where passkey.type.isKMS {
                    // KMIP keys have no versions: only the in-use KMS moves, and only to --new-key-uid.
                    if passkey.type == .kmip && passkey.name != role.name { left.append(passkey.name); continue }
                    let before = try (passkey.name == role.name ? role : passkey).manager(home: home)
                    let target = try passkey.manager(home: home)
                    for fs in filesystems {
                        var new = planned[fs.name] ?? fs.superblock
                        for (i, slot) in new.keyslots.enumerated() where passkey.owns(slot) {
                            new.keyslots[i] = try Self.rewrapped(slot, in: fs, from: before, to: target,
                                                                 newKeyIdentifier: passkey.name == role.name ? newKeyUid : nil)
                        }
                        planned[fs.name] = new
                    }
                }
                for fs in filesystems { rewrap.plan(name: fs.name, store: fs.store, old: fs.superblock, new: planned[fs.name] ?? fs.superblock) }
                try rewrap.commit(registry: registry, reason: "kms rewrap", order: .registryFirst)
                withExtendedLifetime(lock) {}
                for change in rewrap.changes {
                    writeStdout("rewrapped filesystem \(change.name): \(KeyRewrap.describe(change.old)) -> \(KeyRewrap.describe(change.new))\n")
                }
                for name in left { writeStdout("left passkey \(name) as it is: KMIP keys have no versions (add a passkey with the new key instead)\n") }
                writeStdout("rewrapped \(rewrap.changes.count) filesystem key(s)\n")
                if newKeyUid != nil {
                    writeStdout("keep the old key in the KMS: snapshot bundles exported before this rewrap still need it\n")
                }
            }
        }

        /// `slot` rewrapped by its KMS (server-side where it can), proven: a
        /// whole secret against the key-check value, a share against the old unwrap.
        static func rewrapped(_ slot: Keyslot, in fs: (name: String, store: StorePaths, superblock: Superblock), from source: any KeyManager,
                              to target: any KeyManager, newKeyIdentifier: String?) throws -> Keyslot {
            let context = WrapContext(filesystemUUID: fs.superblock.uuid)
            do {
                let envelope = try WrappedKey(decoding: slot.wrappedKey)
                let wrapped = try source.rewrap(envelope, context: context, newKeyIdentifier: newKeyIdentifier)
                let material = try target.unwrap(wrapped, context: context)
                if slot.share == 0 {
                    _ = try Unlock.keys(from: material, superblock: fs.superblock)
                } else {
                    let before = try source.unwrap(envelope, context: context)
                    guard before.constantTimeEquals(material) else {
                        throw UserFacingError("the rewrapped share came back different", exitCode: ExitCodes.wrongKey)
                    }
                }
                var updated = slot
                let reference = target.reference
                updated.kms = StoredKMSReference(type: reference.type.rawValue, address: reference.address,
                                                 keyIdentifier: wrapped.keyIdentifier, keyVersion: wrapped.keyVersion)
                updated.wrappedKey = wrapped.encoded()
                return updated
            } catch {
                let user = UserFacingError.from(error)
                throw UserFacingError("filesystem \(fs.name): \(user.message); no filesystem key was changed", exitCode: user.exitCode)
            }
        }
    }
}

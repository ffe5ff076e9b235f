import ArgumentParser
import Foundation
import KeyVault
import MetaStore

/// `kmsfs security passkey [list|add|use|remove|threshold]`, after Kasten
/// K10's passkeys: several named wraps of every filesystem key, one in use;
/// rotating is "add the new one, then remove the old".
struct PasskeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passkey",
        abstract: "List, add, use or remove the passkeys that wrap every filesystem key, or require several KMS passkeys at once.",
        discussion: """
            Every filesystem's master secret is wrapped once per passkey (a keyslot in its superblock). Mount, fsck and import try the \
            in-use passkey first, then the others. A passphrase passkey is a recovery key: only its public half is kept, so every new \
            filesystem gets a recovery wrap without the passphrase being typed.
            """,
        subcommands: [List.self, Add.self, Use.self, Remove.self, Threshold.self],
        defaultSubcommand: List.self
    )

    /// The home, its lock (held until the command ends) and its passkeys.
    static func open(_ options: HomeOptions) throws -> (Home, HomeLock, PasskeyRegistry) {
        let home = options.resolved
        let lock = try HomeLock(home)
        return (home, lock, try PasskeyRegistry.load(home))
    }

    static func existing(_ name: String, in registry: PasskeyRegistry) throws -> Passkey {
        guard let passkey = registry.passkey(name) else {
            throw UserFacingError("no passkey \(name); 'kmsfs security passkey' lists them", exitCode: ExitCodes.notFound)
        }
        return passkey
    }

    static func validateName(_ name: String) throws {
        guard ComponentName.isValid(name), name.utf8.count <= Keyslot.maxNameBytes else {
            throw UserFacingError("invalid passkey name '\(name)': \(ComponentName.rule), at most \(Keyslot.maxNameBytes) bytes", exitCode: ExitCodes.usage)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the passkeys: name, type, key, in use, created, last used (the default).")
        @OptionGroup var homeOptions: HomeOptions
        @Flag(help: "Print JSON for scripts.") var json = false

        func run() throws {
            try userErrors {
                let home = homeOptions.resolved
                let registry = try PasskeyRegistry.load(home)
                let filesystems = try KeyRewrap(home: home).filesystems()
                let rows: [[String: Any]] = registry.passkeys.map { p in
                    var row: [String: Any] = ["name": p.name, "type": p.type.rawValue, "key": p.summary, "inUse": p.name == registry.inUse,
                                              "created": Self.date(p.created),
                                              "filesystems": filesystems.filter { $0.superblock.keyslots.contains(where: p.owns) }.map(\.name)]
                    if let used = PasskeyUse.lastUsed(p.name, home: home) { row["lastUsed"] = Self.date(used) }
                    if registry.thresholdValue >= 2 { row["holds"] = p.type.isKMS ? "share" : "whole key (recovery)" }
                    return row
                }
                if json {
                    let object: [String: Any] = ["passkeys": rows, "threshold": registry.thresholdValue >= 2 ? registry.thresholdValue : 1]
                    try writeJSON(object)
                    return
                }
                let header = ["NAME", "TYPE", "KEY", "IN USE", "CREATED", "LAST USED", "FILESYSTEMS"]
                let table = [header] + rows.map { r in
                    [r["name"] as! String, r["type"] as! String, r["key"] as! String, (r["inUse"] as! Bool) ? "yes" : "",
                     r["created"] as! String, r["lastUsed"] as? String ?? "never", (r["filesystems"] as! [String]).joined(separator: ",")]
                }
                writeTable(table)
                if registry.thresholdValue >= 2 {
                    writeStdout("threshold: \(registry.thresholdValue) of the \(registry.passkeys.filter { $0.type.isKMS }.count) KMS passkeys must answer\n")
                }
            }
        }

        static func date(_ seconds: UInt64) -> String {
            seconds == 0 ? "unknown" : ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Add a passkey and wrap every filesystem key with it (all or nothing).",
            discussion: """
                passphrase: a recovery passkey; the passphrase comes from --passphrase-file or $KMSFS_PASSPHRASE, never argv.
                vault, kmip, aws: ADDRESS and KEY and the options follow 'kmsfs security kms set'; the KMS must do a wrap/unwrap round trip.
                """)
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Name of the new passkey (as filesystem names).") var name: String
        @Argument(help: "passphrase, vault, kmip or aws.") var type: String
        @Argument(help: "KMS address (vault, kmip, aws).") var address: String?
        @Argument(help: "KMS key (vault, kmip, aws).") var key: String?
        @Option(help: "File holding the recovery passphrase (passphrase).") var passphraseFile: String?
        @Option(help: "A recovery passphrase that unlocks the filesystems, when no other passkey can (not the new passkey's).")
        var unlockPassphraseFile: String?
        @OptionGroup var settings: KMSSettingsOptions

        func run() throws {
            try userErrors {
                try PasskeyCommand.validateName(name)
                guard let kind = PasskeyType(rawValue: type), kind != .local else {
                    throw UserFacingError("unknown passkey type '\(type)': passphrase, vault, kmip or aws", exitCode: ExitCodes.usage)
                }
                // Every argument is checked before the home is touched.
                var passphrase: KeyMaterial?, validated: KMSSettingsOptions.Validated?
                if kind == .passphrase {
                    guard address == nil, key == nil else { throw UserFacingError("a passphrase passkey takes no address or key", exitCode: ExitCodes.usage) }
                    guard let given = try SecretInput.passphrase(file: passphraseFile) else {
                        throw UserFacingError("a passphrase passkey needs --passphrase-file (or $KMSFS_PASSPHRASE)", exitCode: ExitCodes.usage)
                    }
                    passphrase = given
                } else {
                    guard let address, let key else { throw UserFacingError("a \(type) passkey needs ADDRESS and KEY", exitCode: ExitCodes.usage) }
                    guard passphraseFile == nil else { throw UserFacingError("--passphrase-file is only for a passphrase passkey", exitCode: ExitCodes.usage) }
                    validated = try settings.validated(type: type, address: address, keyIdentifier: key, previous: nil)
                }
                let unlockPassphrase = try SecretInput.passphrase(file: unlockPassphraseFile)
                var (home, lock, registry) = try PasskeyCommand.open(homeOptions)
                guard registry.passkey(name) == nil else { throw UserFacingError("passkey \(name) exists", exitCode: ExitCodes.usage) }
                var passkey = Passkey(name: name, type: kind, created: UInt64(time(nil)))
                var recoveryOpener: RecoveryKeyManager?
                if let passphrase {
                    let recovery = try RecoveryKey.derive(passphrase: passphrase)
                    passkey.recovery = recovery
                    recoveryOpener = try RecoveryKeyManager.opener(for: recovery, passphrase: passphrase)
                }
                if let validated { passkey.kms = try KMSSettingsOptions.configure(validated, home: home).0 }
                registry.passkeys.append(passkey)
                var rewrap = KeyRewrap(home: home)
                for fs in try rewrap.unlockAll(purpose: "passkey add", passphrase: unlockPassphrase) {
                    let old = fs.unlocked.superblock
                    let prove = { (m: KeyMaterial) in _ = try Unlock.keys(from: m, superblock: old) }
                    var new = old
                    new.keyslots.removeAll { $0.passkey == name }  // left by an add that was interrupted
                    if old.threshold > 0 && kind.isKMS {
                        (new.keyslots, new.threshold) = try KeyslotWriter.slots(master: fs.unlocked.master, uuid: old.uuid, registry: registry, home: home,
                                                                                keeping: old.keyslots, prove: prove)
                    } else {
                        let slot = try KeyslotWriter.slot(for: passkey, secret: fs.unlocked.master, share: 0, uuid: old.uuid, home: home, prove: prove)
                        if let recoveryOpener {
                            // Only the passphrase opens a recovery wrap: prove this one with it.
                            try prove(try recoveryOpener.unwrap(try WrappedKey(decoding: slot.wrappedKey), context: WrapContext(filesystemUUID: old.uuid)))
                        }
                        new.keyslots.append(slot)
                    }
                    guard (try? new.encodeSlot()) != nil else {
                        throw UserFacingError("filesystem \(fs.name) has no room for another keyslot (at most 16, 3,952 bytes); no filesystem key was changed",
                                              exitCode: ExitCodes.usage)
                    }
                    rewrap.plan(name: fs.name, store: fs.store, old: old, new: new)
                }
                try rewrap.commit(registry: registry, reason: "passkey add", order: .superblocksFirst)
                withExtendedLifetime(lock) {}
                for (fs, reason) in rewrap.skipped { writeStdout("left filesystem \(fs) as it is: \(reason)\n") }
                writeStdout("added passkey \(name) (\(passkey.summary)): wrapped \(rewrap.changes.count) filesystem key(s)\n")
            }
        }
    }

    struct Use: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "use", abstract: "Make a passkey the one unlocking tries first and `kms set` replaces.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The passkey.") var name: String

        func run() throws {
            try userErrors {
                var (home, lock, registry) = try PasskeyCommand.open(homeOptions)
                _ = try PasskeyCommand.existing(name, in: registry)
                let before = registry.inUse
                registry.inUse = name
                try registry.save(home)
                withExtendedLifetime(lock) {}
                AuditLog.record(home, "passkey-use", ["passkey": name, "before": before])
                writeStdout("passkey \(name) is in use\n")
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove",
            abstract: "Remove a passkey's keyslot from every filesystem (all or nothing); refused for the in-use passkey or the last one able to unlock a filesystem.",
            discussion: "A name the home no longer lists (a removal that was interrupted) removes the slots left under that name.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "The passkey.") var name: String

        func run() throws {
            try userErrors {
                var (home, lock, registry) = try PasskeyCommand.open(homeOptions)
                let listed = registry.passkey(name)
                guard registry.inUse != name else {
                    throw UserFacingError("passkey \(name) is in use; 'kmsfs security passkey use OTHER' first", exitCode: ExitCodes.usage)
                }
                registry.passkeys.removeAll { $0.name == name }
                let holders = registry.passkeys.filter { $0.type.isKMS }.count
                if registry.thresholdValue >= 2, listed?.type.isKMS == true, holders < registry.thresholdValue {
                    throw UserFacingError("a threshold of \(registry.thresholdValue) needs that many KMS passkeys; 'kmsfs security passkey threshold \(max(1, holders))' first",
                                          exitCode: ExitCodes.usage)
                }
                var rewrap = KeyRewrap(home: home)
                var stranded: [String] = [], short: [String] = []
                for fs in try rewrap.filesystems() {
                    var new = fs.superblock
                    new.keyslots.removeAll { listed?.owns($0) ?? ($0.passkey == name) }
                    guard new.keyslots.count < fs.superblock.keyslots.count else { continue }
                    let shares = new.keyslots.filter { $0.share != 0 }.count
                    if shares > 0 && shares < Int(new.threshold) { short.append(fs.name) }
                    let left = new.keyslots.filter { slot in registry.passkeys.contains { $0.owns(slot) } || KeyslotWriter.isOwnPassphrase(slot) }
                    let unlockable = left.contains { $0.share == 0 } || (new.threshold > 0 && left.filter { $0.share != 0 }.count >= Int(new.threshold))
                    if !unlockable { stranded.append(fs.name) }
                    rewrap.plan(name: fs.name, store: fs.store, old: fs.superblock, new: new)
                }
                guard stranded.isEmpty else {
                    throw UserFacingError("passkey \(name) is the last one able to unlock filesystem(s) \(stranded.joined(separator: ", ")); add another passkey first",
                                          exitCode: ExitCodes.usage)
                }
                guard short.isEmpty else {
                    throw UserFacingError("filesystem(s) \(short.joined(separator: ", ")) would keep fewer key shares than they need; lower the threshold first",
                                          exitCode: ExitCodes.usage)
                }
                guard listed != nil || !rewrap.changes.isEmpty else {
                    throw UserFacingError("no passkey \(name); 'kmsfs security passkey' lists them", exitCode: ExitCodes.notFound)
                }
                // Superblocks first: a kill part way leaves the passkey listed, and this command can run again.
                try rewrap.commit(registry: listed == nil ? nil : registry, reason: "passkey remove", order: .superblocksFirst)
                withExtendedLifetime(lock) {}
                writeStdout("removed passkey \(name) from \(rewrap.changes.count) filesystem(s)\n")
            }
        }
    }

    struct Threshold: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "threshold",
            abstract: "Require M of the KMS passkeys to unlock (Shamir shares over their wraps); 1 turns it off. Passphrase passkeys keep a whole-key recovery slot.")
        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "How many KMS passkeys must answer (1: any one).") var m: Int
        @Option(help: "A recovery passphrase that unlocks the filesystems, when the KMS passkeys cannot.") var unlockPassphraseFile: String?

        func run() throws {
            try userErrors {
                var (home, lock, registry) = try PasskeyCommand.open(homeOptions)
                let holders = registry.passkeys.filter { $0.type.isKMS }.count
                guard m >= 1, m <= max(1, holders) else {
                    throw UserFacingError("a threshold of \(m) needs between 1 and the \(holders) KMS passkeys", exitCode: ExitCodes.usage)
                }
                if m >= 2, let local = registry.passkeys.first(where: { $0.type == .local }) {
                    throw UserFacingError("passkey \(local.name) is the local key file, which unlocks alone beside the store; remove it first", exitCode: ExitCodes.usage)
                }
                registry.threshold = m >= 2 ? m : nil
                var rewrap = KeyRewrap(home: home)
                for fs in try rewrap.unlockAll(purpose: "passkey threshold", passphrase: try SecretInput.passphrase(file: unlockPassphraseFile)) {
                    let old = fs.unlocked.superblock
                    var new = old
                    (new.keyslots, new.threshold) = try KeyslotWriter.slots(master: fs.unlocked.master, uuid: old.uuid, registry: registry, home: home,
                                                                            keeping: old.keyslots) {
                        _ = try Unlock.keys(from: $0, superblock: old)
                    }
                    rewrap.plan(name: fs.name, store: fs.store, old: old, new: new)
                }
                try rewrap.commit(registry: registry, reason: "passkey threshold", order: .superblocksFirst)
                withExtendedLifetime(lock) {}
                writeStdout(m >= 2 ? "threshold \(m) of \(holders) KMS passkeys: split \(rewrap.changes.count) filesystem key(s)\n"
                                   : "threshold off: every passkey holds the whole key of \(rewrap.changes.count) filesystem(s)\n")
            }
        }
    }
}

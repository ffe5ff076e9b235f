import BlockCipher
import Foundation
import KeyVault
import MetaStore

/// A filesystem unlocked: its keys and master secret, and which passkeys did it.
struct Unlocked {
    let superblock: Superblock
    let keys: FilesystemKeys
    /// The master secret (locked, wiped when dropped): for rewrapping into new keyslots.
    let master: KeyMaterial
    /// The KeyManager that answered (the first share holder's under a threshold):
    /// a mount daemon keeps a Vault one to renew its token and write anchors.
    let manager: any KeyManager
    /// That passkey's KMS settings, if it is a KMS passkey of this home.
    let kms: KMSConfiguration?
    /// Passkeys whose wraps answered, and those that were tried and failed, with why.
    let answered: [String]
    let failed: [(passkey: String, reason: String)]
    /// "passkey vault-a" or "passkeys a, b (2 of 3 shares)".
    let summary: String
}

/// Turns a store's superblock into usable keys: try its keyslots through the
/// home's passkeys (the in-use one first), unwrap, derive subkeys, and prove
/// them with the key-check value before anything touches the data.
enum Unlock {
    /// One way to open one keyslot.
    private struct Attempt {
        let slot: Keyslot
        /// The home passkey, or a description of a slot this home knows no passkey for.
        let label: String
        let kms: KMSConfiguration?
        /// No passkey of this home can open the slot: the attempt only explains why.
        var placeholder = false
        /// Builds the KeyManager; `quick` when another attempt could answer instead.
        let manager: (_ quick: Bool) throws -> any KeyManager
    }

    /// Reads and checks the superblock, then unlocks it (see `unlock`).
    /// With `upgrading`, the keys come derived with integrity (after the old key-check value proved the key) for `fs upgrade`.
    static func open(_ store: StorePaths, home: Home, passphrase: KeyMaterial?, purpose: String, upgrading: Bool = false) throws -> Unlocked {
        try unlock(try SuperblockFile.read(store.superblock), home: home, passphrase: passphrase, filesystem: (store.root as NSString).lastPathComponent,
                   purpose: purpose, upgrading: upgrading)
    }

    /// Unwraps a superblock's key through this home's passkeys and checks it
    /// against the key-check value: whole slots one at a time, share slots
    /// until the threshold answered. A KMS that is down costs one attempt
    /// when another slot remains. Every unlock is an event in the home's
    /// audit log (`purpose`: mount, fsck, import...), naming the passkeys.
    static func unlock(_ superblock: Superblock, home: Home, passphrase: KeyMaterial?, filesystem: String, purpose: String,
                       upgrading: Bool = false) throws -> Unlocked {
        var fields: [String: Any] = ["filesystem": filesystem, "uuid": superblock.uuidString, "purpose": purpose, "kms": superblock.kms.type,
                                     "key": superblock.kms.keyIdentifier, "keyVersion": superblock.kms.keyVersion]
        do {
            let unlocked = try attempt(superblock, home: home, passphrase: passphrase, filesystem: filesystem, upgrading: upgrading)
            fields["passkey"] = unlocked.answered.joined(separator: ",")
            if !unlocked.failed.isEmpty { fields["failed"] = unlocked.failed.map { "\($0.passkey): \($0.reason)" }.joined(separator: "; ") }
            AuditLog.record(home, "unwrap", fields)
            PasskeyUse.record(unlocked.answered, home: home)
            for failure in unlocked.failed { writeStderr("kmsfs: passkey \(failure.passkey) did not answer: \(failure.reason)\n") }
            return unlocked
        } catch {
            fields["error"] = UserFacingError.from(error).message
            AuditLog.record(home, "unwrap-failed", fields)
            throw error
        }
    }

    private static func attempt(_ superblock: Superblock, home: Home, passphrase: KeyMaterial?, filesystem: String, upgrading: Bool) throws -> Unlocked {
        let attempts = try plan(superblock, home: home, passphrase: passphrase)
        let context = WrapContext(filesystemUUID: superblock.uuid)
        var shares: [Shamir.Share] = [], shareLabels: [String] = [], failed: [(passkey: String, reason: String)] = [], errors: [any Error] = []
        var first: (manager: any KeyManager, kms: KMSConfiguration?)?
        var keyCheckFailed = false
        for (i, attempt) in attempts.enumerated() where attempt.slot.share == 0 || !shares.contains(where: { $0.x == attempt.slot.share }) {
            do {
                // No retries while a real alternative remains: a KMS that is down costs one timeout.
                let quick = attempts[(i + 1)...].contains { !$0.placeholder }
                let manager = try attempt.manager(quick)
                let envelope = try WrappedKey(decoding: attempt.slot.wrappedKey)
                // The slot's label and its envelope must name the same key: KMIP decrypts with
                // the envelope's, and the home's rules are checked against the slot's.
                guard envelope.provider.rawValue == attempt.slot.kms.type, envelope.keyIdentifier == attempt.slot.kms.keyIdentifier else {
                    throw KeyVaultError.malformedEnvelope(reason: "the keyslot names \(attempt.slot.kms.type) key '\(attempt.slot.kms.keyIdentifier)' "
                                                          + "but its envelope \(envelope.provider.rawValue) key '\(envelope.keyIdentifier)'")
                }
                let material = try manager.unwrap(envelope, context: context)
                // The daemon keeps this manager (token renewal, anchors): with retries.
                let keeper = quick ? try attempt.manager(false) : manager
                var master = material
                if attempt.slot.share != 0 {
                    shares.append(Shamir.Share(x: attempt.slot.share, y: material))
                    shareLabels.append(attempt.label)
                    if first == nil { first = (keeper, attempt.kms) }
                    guard shares.count == Int(superblock.threshold) else { continue }
                    master = try Shamir.combine(shares)
                }
                let keys: FilesystemKeys
                do { keys = try self.keys(from: master, superblock: superblock, upgrading: upgrading) } catch {
                    keyCheckFailed = true
                    // A share that does not fit: let the next one take its place.
                    if attempt.slot.share != 0 { shares.removeLast(); shareLabels.removeLast() }
                    throw error
                }
                if attempt.slot.share == 0 {
                    return Unlocked(superblock: superblock, keys: keys, master: master, manager: keeper, kms: attempt.kms,
                                    answered: [attempt.label], failed: failed, summary: "passkey \(attempt.label)")
                }
                let total = superblock.keyslots.filter { $0.share != 0 }.count
                return Unlocked(superblock: superblock, keys: keys, master: master, manager: first!.manager, kms: first!.kms, answered: shareLabels,
                                failed: failed, summary: "passkeys \(shareLabels.joined(separator: ", ")) (\(shares.count) of \(total) shares)")
            } catch {
                failed.append((attempt.label, UserFacingError.from(error).message))
                errors.append(error)
            }
        }
        // One way tried: its own error, as precise as it was.
        if errors.count == 1, shares.isEmpty { throw errors[0] }
        if errors.isEmpty { throw KeyVaultError.passphraseRequired }
        let unreachable = errors.allSatisfy { UserFacingError.from($0).exitCode == ExitCodes.kmsUnreachable }
        let code = keyCheckFailed ? ExitCodes.wrongKey : unreachable ? ExitCodes.kmsUnreachable : UserFacingError.from(errors[0]).exitCode
        let tried = failed.map { "\($0.passkey): \($0.reason)" }.joined(separator: "; ")
        if superblock.threshold > 0 && !attempts.contains(where: { $0.slot.share == 0 }) {
            let missingShares = !keyCheckFailed && errors.contains { UserFacingError.from($0).exitCode == ExitCodes.kmsUnreachable }
            throw UserFacingError("filesystem \(filesystem): only \(shares.count) of the \(superblock.threshold) key shares it needs answered"
                                  + (shareLabels.isEmpty ? "" : " (from \(shareLabels.joined(separator: ", ")))") + "; failed: \(tried)",
                                  exitCode: missingShares ? ExitCodes.kmsUnreachable : code)
        }
        throw UserFacingError("no passkey unlocked filesystem \(filesystem): \(tried)", exitCode: code)
    }

    /// The ways to open `superblock`'s slots in this home, in order: slots of
    /// the in-use passkey, of the other passkeys, then slots this home has no
    /// passkey of (a bundle from elsewhere) through a passkey of the same kind.
    /// A passphrase slot is tried only with a passphrase.
    private static func plan(_ superblock: Superblock, home: Home, passphrase: KeyMaterial?) throws -> [Attempt] {
        let registry = try PasskeyRegistry.load(home)
        var attempts = [Attempt](), owned = Set<Int>()
        for passkey in registry.unlockOrder {
            for (i, slot) in superblock.keyslots.enumerated() where passkey.owns(slot) {
                owned.insert(i)
                if passkey.type == .passphrase && passphrase == nil { continue }
                attempts.append(try attempt(slot, passkey: passkey, label: passkey.name, home: home, passphrase: passphrase))
            }
        }
        for (i, slot) in superblock.keyslots.enumerated() where !owned.contains(i) {
            let label = slot.passkey.isEmpty ? "\(slot.kms.type) \(slot.kms.keyIdentifier)" : slot.passkey
            switch (slot.kms.type, slot.kms.keyIdentifier) {
            case ("local", "passphrase"), ("local", RecoveryKeyManager.keyIdentifier):
                guard let passphrase else { continue }
                let manager: any KeyManager = slot.kms.keyIdentifier == "passphrase"
                    ? LocalKeyManager(source: .passphrase(passphrase)) : RecoveryKeyManager(source: .passphrase(passphrase))
                attempts.append(Attempt(slot: slot, label: label, kms: nil) { _ in manager })
            case ("local", _):
                attempts.append(Attempt(slot: slot, label: label, kms: nil) { _ in LocalKeyManager(source: .keyFile(path: home.localKey)) })
            default:
                let kinds = registry.unlockOrder.filter { $0.type.rawValue == slot.kms.type }
                if kinds.isEmpty {
                    let configured = registry.passkeys.map { "\($0.name) (\($0.summary))" }.joined(separator: ", ")
                    attempts.append(Attempt(slot: slot, label: label, kms: nil, placeholder: true) { _ in
                        throw KeyVaultError.providerMismatch(envelope: "\(slot.kms.type) key '\(slot.kms.keyIdentifier)'", configured: configured)
                    })
                }
                for passkey in kinds {
                    attempts.append(try attempt(slot, passkey: passkey, label: "\(label) (through \(passkey.name))", home: home, passphrase: passphrase))
                }
            }
        }
        return attempts
    }

    private static func attempt(_ slot: Keyslot, passkey: Passkey, label: String, home: Home, passphrase: KeyMaterial?) throws -> Attempt {
        if passkey.type == .passphrase, let passphrase, let recovery = passkey.recovery {
            // This home's recovery key: its own salt and cost, and envelopes naming another key refused before any scrypt.
            return Attempt(slot: slot, label: label, kms: nil) { _ in try RecoveryKeyManager.opener(for: recovery, passphrase: passphrase) }
        }
        return Attempt(slot: slot, label: label, kms: passkey.kms) { quick in
            // KMIP decrypts with the key the envelope names, and its CBC envelope carries no
            // authentication: only keys this home configured (now or before a rewrap) may be asked.
            if passkey.type == .kmip, let kms = passkey.kms, !kms.knownKeyIdentifiers.contains(slot.kms.keyIdentifier) {
                throw KeyVaultError.providerMismatch(envelope: "kmip key '\(slot.kms.keyIdentifier)', which this home never configured",
                                                     configured: kms.summary + " (earlier keys: \(kms.previousKeyIdentifiers?.joined(separator: ", ") ?? "none"))")
            }
            return try passkey.manager(home: home, quick: quick)
        }
    }

    /// Derives the subkeys from an unwrapped master and checks the key-check value.
    static func keys(from material: KeyMaterial, superblock: Superblock, upgrading: Bool = false) throws -> FilesystemKeys {
        let master = material.withUnsafeBytes { SecretBytes(copying: $0) }
        let keys = try FilesystemKeys(masterSecret: master, boundTo: superblock.keyCheckBinding, integrity: superblock.hasIntegrity)
        let check = SecretBytes(copying: keys.keyCheckValue)
        guard check.constantTimeEquals(superblock.keyCheckValue) else {
            throw UserFacingError("the unwrapped key does not match this filesystem's key-check value (wrong key for filesystem \(superblock.uuidString))",
                                  exitCode: ExitCodes.wrongKey)
        }
        if upgrading { return try FilesystemKeys(masterSecret: master, boundTo: superblock.uuid, integrity: true) }
        return keys
    }
}

import BlockCipher
import Foundation
import KeyVault
import MetaStore

/// Turns a store's superblock into usable keys: pick the KeyManager the
/// envelope names, unwrap once, derive subkeys, and prove them with the
/// key-check value before anything touches the data.
enum Unlock {
    /// The KeyManager that can unwrap `envelope` in this home.
    static func keyManager(for envelope: WrappedKey, home: Home, passphrase: KeyMaterial?) throws -> any KeyManager {
        switch envelope.provider {
        case .local:
            if envelope.keyIdentifier == "passphrase" {
                guard let passphrase else { throw KeyVaultError.passphraseRequired }
                return LocalKeyManager(source: .passphrase(passphrase))
            }
            return LocalKeyManager(source: .keyFile(path: home.localKey))
        default:
            let config = try KMSConfiguration.load(home)
            guard config.type == envelope.provider else {
                throw KeyVaultError.providerMismatch(envelope: "\(envelope.provider.rawValue) key '\(envelope.keyIdentifier)'", configured: config.summary)
            }
            // KMIP decrypts with the key the envelope names, and its CBC envelope carries no
            // authentication: only keys this home configured (now or before a rewrap) may be asked.
            if config.type == .kmip, !config.knownKeyIdentifiers.contains(envelope.keyIdentifier) {
                throw KeyVaultError.providerMismatch(envelope: "kmip key '\(envelope.keyIdentifier)', which this home never configured",
                                                     configured: config.summary + " (earlier keys: \(config.previousKeyIdentifiers?.joined(separator: ", ") ?? "none"))")
            }
            return try config.keyManager(home: home)
        }
    }

    /// Reads and checks the superblock, unwraps the master secret and derives the keys;
    /// also returns the KeyManager that did it (the mount daemon keeps a Vault one to renew its token).
    /// With `upgrading`, the keys come derived with integrity (after the old key-check value proved the key) for `fs upgrade`.
    static func open(_ store: StorePaths, home: Home, passphrase: KeyMaterial?, purpose: String, upgrading: Bool = false) throws -> (Superblock, FilesystemKeys, any KeyManager) {
        let superblock = try SuperblockFile.read(store.superblock)
        let (keys, manager) = try unlock(superblock, home: home, passphrase: passphrase, filesystem: (store.root as NSString).lastPathComponent,
                                         purpose: purpose, upgrading: upgrading)
        return (superblock, keys, manager)
    }

    /// Unwraps a superblock's key through the KMS its envelope names (as this
    /// home configures it) and checks it against the key-check value.
    /// Every attempt is an event in the home's audit log (`purpose`: mount, fsck, import...).
    static func unlock(_ superblock: Superblock, home: Home, passphrase: KeyMaterial?, filesystem: String, purpose: String,
                       upgrading: Bool = false) throws -> (FilesystemKeys, any KeyManager) {
        var fields: [String: Any] = ["filesystem": filesystem, "uuid": superblock.uuidString, "purpose": purpose, "kms": superblock.kms.type,
                                     "key": superblock.kms.keyIdentifier, "keyVersion": superblock.kms.keyVersion]
        do {
            let envelope = try WrappedKey(decoding: superblock.wrappedKey)
            let manager = try keyManager(for: envelope, home: home, passphrase: passphrase)
            let material = try manager.unwrap(envelope, context: WrapContext(filesystemUUID: superblock.uuid))
            let result = (try keys(from: material, superblock: superblock, upgrading: upgrading), manager)
            AuditLog.record(home, "unwrap", fields)
            return result
        } catch {
            fields["error"] = UserFacingError.from(error).message
            AuditLog.record(home, "unwrap-failed", fields)
            throw error
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

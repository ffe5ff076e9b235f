import Foundation
import KeyVault
import MetaStore

/// Wraps a filesystem's master secret into keyslots, one per passkey
/// (docs/FORMAT.md "Keyslots"). Every wrap a KMS or the key file made is
/// unwrapped again and proven (`prove`: the key-check value for a whole
/// secret, the bytes for a share) before it may replace anything.
enum KeyslotWriter {
    /// One slot per passkey of `registry`, then `keep`: the slots of `old`
    /// that are no passkey's to replace (a filesystem's own passphrase). With
    /// a threshold the KMS passkeys get Shamir shares (x = 1, 2, ... in
    /// registry order) and a passphrase passkey the whole secret, as a recovery slot.
    static func slots(master: KeyMaterial, uuid: [UInt8], registry: PasskeyRegistry, home: Home, keeping old: [Keyslot] = [],
                      prove: (KeyMaterial) throws -> Void) throws -> (slots: [Keyslot], threshold: UInt8) {
        let kept = old.filter(isOwnPassphrase)
        let threshold = registry.thresholdValue
        guard threshold >= 2 else {
            return (try registry.unlockOrder.map { try slot(for: $0, secret: master, share: 0, uuid: uuid, home: home, prove: prove) } + kept, 0)
        }
        // In the home's passkey order, which `use` does not change.
        let holders = registry.passkeys.filter { $0.type.isKMS }
        guard !registry.passkeys.contains(where: { $0.type == .local }), holders.count >= threshold, holders.count < 256 else {
            throw UserFacingError("a threshold of \(threshold) needs at least \(threshold) KMS passkeys and no local one", exitCode: ExitCodes.usage)
        }
        let shares = try Shamir.split(master, threshold: threshold, xs: holders.indices.map { UInt8($0 + 1) })
        var out = [Keyslot]()
        for (passkey, share) in zip(holders, shares) {
            out.append(try slot(for: passkey, secret: share.y, share: share.x, uuid: uuid, home: home) { unwrapped in
                guard unwrapped.constantTimeEquals(share.y) else {
                    throw UserFacingError("passkey \(passkey.name): the share came back different from the KMS", exitCode: ExitCodes.wrongKey)
                }
            })
        }
        for passkey in registry.unlockOrder where passkey.type == .passphrase {
            out.append(try slot(for: passkey, secret: master, share: 0, uuid: uuid, home: home, prove: prove))
        }
        return (out + kept, UInt8(threshold))
    }

    /// A filesystem's own passphrase slot (`fs create --passphrase-file`): no passkey of the home replaces it.
    static func isOwnPassphrase(_ slot: Keyslot) -> Bool {
        slot.share == 0 && slot.kms.type == "local" && slot.kms.keyIdentifier == "passphrase"
    }

    /// A slot only a passphrase opens: a filesystem's own, or a recovery passkey's (of any home).
    static func isPassphraseSlot(_ slot: Keyslot) -> Bool {
        isOwnPassphrase(slot) || (slot.share == 0 && slot.kms.type == "local" && slot.kms.keyIdentifier == RecoveryKeyManager.keyIdentifier)
    }

    /// `secret` (the master or a share) wrapped by `passkey`, unwrapped again
    /// and handed to `prove` — except a recovery wrap, which only the
    /// passphrase opens (`passkey add` proves that one with the passphrase).
    static func slot(for passkey: Passkey, secret: KeyMaterial, share: UInt8, uuid: [UInt8], home: Home,
                     prove: (KeyMaterial) throws -> Void) throws -> Keyslot {
        let manager = try passkey.manager(home: home)
        let context = WrapContext(filesystemUUID: uuid)
        let wrapped: WrappedKey
        do {
            wrapped = try manager.wrap(secret, context: context)
            if passkey.type != .passphrase { try prove(try manager.unwrap(wrapped, context: context)) }
        } catch {
            let user = UserFacingError.from(error)
            throw UserFacingError("passkey \(passkey.name): \(user.message)", exitCode: user.exitCode)
        }
        let reference = manager.reference
        return Keyslot(passkey: passkey.name, share: share,
                       kms: StoredKMSReference(type: reference.type.rawValue, address: reference.address,
                                               keyIdentifier: wrapped.keyIdentifier, keyVersion: wrapped.keyVersion),
                       wrappedKey: wrapped.encoded())
    }
}

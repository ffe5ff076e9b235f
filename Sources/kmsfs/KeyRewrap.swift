import Foundation
import KeyVault
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// Changes the keyslots of every filesystem of the home, all or nothing:
/// every new slot is computed and proven (against the key-check value) before
/// anything is written; then the superblocks and the passkey registry are
/// written in an order that leaves every filesystem unlockable by the old or
/// the new passkeys whenever the process dies, and a failure part way puts
/// every superblock and the registry back as they were.
struct KeyRewrap {
    struct Change {
        var name: String
        var store: StorePaths
        var old: Superblock
        var new: Superblock
    }

    /// How the superblocks and the registry follow each other.
    enum Order {
        /// Slots are added or dropped (`passkey add`, `remove`, `threshold`): superblocks, then the registry.
        case superblocksFirst
        /// The registry must name a key before slots do (`kms rewrap --new-key-uid`:
        /// the new KMIP key becomes known, the old one stays known): the registry, then the superblocks.
        case registryFirst
        /// A passkey is replaced (`kms set`, `kms unset`): superblocks with the
        /// old and the new slots, the registry, then the superblocks with the new only.
        case transitional
    }

    let home: Home
    private(set) var changes: [Change] = []
    /// Filesystems left as they are, with the reason (e.g. passphrase-protected).
    private(set) var skipped: [(name: String, reason: String)] = []

    init(home: Home) { self.home = home }

    /// Each filesystem's name, store and superblock.
    func filesystems() throws -> [(name: String, store: StorePaths, superblock: Superblock)] {
        try home.filesystemNames().map { name in
            let store = home.store(name)
            return (name, store, try SuperblockFile.read(store.superblock))
        }
    }

    /// Every filesystem, unlocked through the home's passkeys (no passphrase
    /// asked: one protected only by its own passphrase is skipped, with the reason).
    /// `passphrase`: a recovery passphrase that unlocks them when no KMS passkey can.
    mutating func unlockAll(purpose: String, passphrase: KeyMaterial? = nil,
                            where include: (Superblock) -> Bool = { _ in true }) throws -> [(name: String, store: StorePaths, unlocked: Unlocked)] {
        var out: [(name: String, store: StorePaths, unlocked: Unlocked)] = []
        for fs in try filesystems() where include(fs.superblock) {
            if fs.superblock.keyslots.allSatisfy(KeyslotWriter.isOwnPassphrase) {
                skip(fs.name, reason: "its key is protected by its own passphrase, not by the home's passkeys")
                continue
            }
            do {
                out.append((fs.name, fs.store, try Unlock.unlock(fs.superblock, home: home, passphrase: passphrase, filesystem: fs.name, purpose: purpose)))
            } catch {
                let user = UserFacingError.from(error)
                throw UserFacingError("filesystem \(fs.name): \(user.message); no filesystem key was changed", exitCode: user.exitCode)
            }
        }
        return out
    }

    /// Plans `new` to replace `old` for filesystem `name`.
    mutating func plan(name: String, store: StorePaths, old: Superblock, new: Superblock) {
        if new != old { changes.append(Change(name: name, store: store, old: old, new: new)) }
    }

    mutating func skip(_ name: String, reason: String) { skipped.append((name, reason)) }

    /// Writes the planned superblocks and `registry` (when given) in `order`,
    /// all or nothing; each changed filesystem is an audit event with `reason`
    /// (the command that did it).
    func commit(registry: PasskeyRegistry?, reason: String, order: Order) throws {
        let previous = try PasskeyRegistry.load(home)
        var written: [Change] = []
        var registryWritten = false
        do {
            if order == .registryFirst, let registry {
                try registry.save(home)
                registryWritten = true
            }
            for change in changes {
                var first = change.new
                if order == .transitional && change.old.threshold == 0 && change.new.threshold == 0 {
                    let added = change.new.keyslots.filter { !change.old.keyslots.contains($0) }
                    first.keyslots = change.old.keyslots + added
                    // Too many slots for one superblock: straight to the new ones.
                    if (try? first.encodeSlot()) == nil { first = change.new }
                }
                try SuperblockFile.replace(first, at: change.store.superblock)
                written.append(change)
                FaultInjection.crashPoint("keyslots-written")
            }
            if order != .registryFirst, let registry { try registry.save(home) }
        } catch {
            for change in written.reversed() where (try? SuperblockFile.replace(change.old, at: change.store.superblock)) == nil {
                writeStderr("kmsfs: error: could not restore \(change.store.superblock); it now holds \(Self.describe(change.new))\n")
            }
            if registryWritten || registry != nil { try? previous.save(home) }
            throw error
        }
        if order == .transitional {
            // The registry now names the new passkeys: the old slots may go. A failure here leaves both, which still
            // unlock, and a second run of the command removes the old ones.
            for change in changes where (try? SuperblockFile.replace(change.new, at: change.store.superblock)) == nil {
                writeStderr("kmsfs: warning: \(change.store.superblock) still holds its old keyslots too; run the command again, "
                            + "or 'kmsfs security passkey remove' the old passkey's name\n")
            }
        }
        for change in changes {
            AuditLog.record(home, "rewrap", ["filesystem": change.name, "uuid": change.new.uuidString, "by": reason,
                                             "from": Self.describe(change.old), "to": Self.describe(change.new)])
        }
        if let registry, registry != previous { AuditLog.record(home, "passkeys-changed", ["by": reason, "passkeys": registry.passkeys.map(\.name).joined(separator: ",")]) }
    }

    /// "vault-a: vault k v2, recovery: local recovery" for logs and messages.
    static func describe(_ superblock: Superblock) -> String {
        superblock.keyslots.map { slot in
            (slot.passkey.isEmpty ? "" : slot.passkey + ": ") + "\(slot.kms.type) \(slot.kms.keyIdentifier)" + (slot.kms.keyVersion.isEmpty ? "" : " \(slot.kms.keyVersion)")
                + (slot.share == 0 ? "" : " (share \(slot.share))")
        }.joined(separator: ", ")
    }
}

/// An exclusive lock on the home's KMS state, so `kms set/unset/rewrap` and
/// `fs create` do not interleave.
final class HomeLock {
    private let fd: Int32

    init(_ home: Home) throws {
        try home.ensure()
        fd = open(home.path + "/kms.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw UserFacingError("cannot open \(home.path)/kms.lock: \(String(cString: strerror(errno)))", exitCode: ExitCodes.io) }
        guard flock(fd, LOCK_EX) == 0 else {
            close(fd)
            throw UserFacingError("cannot lock \(home.path)/kms.lock", exitCode: ExitCodes.io)
        }
    }

    deinit { close(fd) }
}

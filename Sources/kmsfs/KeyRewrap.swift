import Foundation
import KeyVault
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// Moves filesystem keys between KMS keys, all or nothing: every new wrapped
/// key is computed (and proven against the key-check value) before anything is
/// written; then the configuration and the superblocks are written, and a
/// failure part way restores every superblock and the configuration as they were.
struct KeyRewrap {
    struct Change {
        var name: String
        var store: StorePaths
        var old: Superblock
        var new: Superblock
    }

    let home: Home
    private(set) var changes: [Change] = []
    /// Filesystems left as they are, with the reason (e.g. passphrase-protected).
    private(set) var skipped: [(name: String, reason: String)] = []

    init(home: Home) { self.home = home }

    /// Each filesystem's name, superblock and decoded envelope.
    func filesystems() throws -> [(name: String, store: StorePaths, superblock: Superblock, envelope: WrappedKey)] {
        try home.filesystemNames().map { name in
            let store = home.store(name)
            let superblock = try SuperblockFile.read(store.superblock)
            return (name, store, superblock, try WrappedKey(decoding: superblock.wrappedKey))
        }
    }

    /// Plans a new wrapped key for `name`: `transform` gets the old envelope and returns the new one.
    mutating func plan(name: String, store: StorePaths, superblock: Superblock,
                       manager target: any KeyManager, transform: (WrappedKey) throws -> WrappedKey) throws {
        let envelope = try WrappedKey(decoding: superblock.wrappedKey)
        let context = WrapContext(filesystemUUID: superblock.uuid)
        let wrapped: WrappedKey
        do { wrapped = try transform(envelope) } catch {
            throw UserFacingError("filesystem \(name): \(UserFacingError.from(error).message); no filesystem key was changed",
                                  exitCode: UserFacingError.from(error).exitCode)
        }
        // Prove the new wrapped key before it replaces the old one.
        let material = try target.unwrap(wrapped, context: context)
        _ = try Unlock.keys(from: material, superblock: superblock)
        var updated = superblock
        let reference = target.reference
        updated.kms = StoredKMSReference(type: reference.type.rawValue, address: reference.address,
                                         keyIdentifier: wrapped.keyIdentifier, keyVersion: wrapped.keyVersion)
        updated.wrappedKey = wrapped.encoded()
        changes.append(Change(name: name, store: store, old: superblock, new: updated))
    }

    mutating func skip(_ name: String, reason: String) { skipped.append((name, reason)) }

    /// Writes `configuration` (when given) and every planned superblock; on any
    /// failure puts back what was written and rethrows.
    /// Writes the new superblocks (and `configuration`), all or nothing; each
    /// rewrapped key is an audit event with `reason` (the command that did it).
    func commit(configuration: KMSConfiguration?, reason: String) throws {
        let previous = try KMSConfiguration.load(home)
        if let configuration { try configuration.save(home) }
        var written: [Change] = []
        do {
            for change in changes {
                try SuperblockFile.replace(change.new, at: change.store.superblock)
                written.append(change)
            }
        } catch {
            for change in written.reversed() {
                if (try? SuperblockFile.replace(change.old, at: change.store.superblock)) == nil {
                    writeStderr("kmsfs: error: could not restore \(change.store.superblock); its key is wrapped by \(change.new.kms.type) \(change.new.kms.keyIdentifier)\n")
                }
            }
            if configuration != nil { try? previous.save(home) }
            throw error
        }
        for change in changes {
            AuditLog.record(home, "rewrap", ["filesystem": change.name, "uuid": change.new.uuidString, "by": reason,
                                             "from": "\(change.old.kms.type) \(change.old.kms.keyIdentifier) \(change.old.kms.keyVersion)",
                                             "to": "\(change.new.kms.type) \(change.new.kms.keyIdentifier) \(change.new.kms.keyVersion)"])
        }
        if let configuration { AuditLog.record(home, "kms-configured", ["by": reason, "kms": configuration.summary]) }
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

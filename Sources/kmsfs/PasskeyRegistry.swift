import Foundation
import KeyVault
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// What protects a passkey's wraps.
enum PasskeyType: String, Codable, CaseIterable {
    /// The home's key file.
    case local
    /// A recovery passphrase (an X25519 key derived from it; the home keeps the public half).
    case passphrase
    case vault, kmip, aws

    var isKMS: Bool { self == .vault || self == .kmip || self == .aws }
}

/// One named way to unwrap every filesystem key of the home (Kasten's
/// passkeys, docs/FORMAT.md "Passkeys"). Each filesystem's superblock holds
/// one keyslot per passkey.
struct Passkey: Codable, Equatable {
    var name: String
    var type: PasskeyType
    /// Seconds since the Unix epoch.
    var created: UInt64
    /// vault, kmip, aws: how to reach the KMS (the token sealed with the local key).
    var kms: KMSConfiguration?
    /// passphrase: the public half of the recovery key.
    var recovery: RecoveryKey?

    static func local(now: UInt64) -> Passkey { Passkey(name: "local", type: .local, created: now) }

    /// "vault https://... key k", "local key file", "recovery key 1a2b3c4d".
    var summary: String {
        switch type {
        case .local: return "the local key file"
        case .passphrase: return "recovery passphrase (key \(recovery?.fingerprint ?? "?"))"
        default: return kms?.summary ?? type.rawValue
        }
    }

    /// Whether `slot` is this passkey's: by name, or, for the unnamed slot of
    /// a superblock made before passkeys, by the key that wrapped it (the
    /// key file, or a KMS of this type at this address).
    func owns(_ slot: Keyslot) -> Bool {
        guard slot.passkey.isEmpty else { return slot.passkey == name }
        switch type {
        case .local: return slot.kms.type == "local" && slot.kms.keyIdentifier == "keyfile"
        case .passphrase: return false
        default: return slot.kms.type == type.rawValue && slot.kms.address == kms?.referenceAddress
        }
    }

    /// The KeyManager that wraps to this passkey (and unwraps, except a
    /// passphrase passkey: that needs the passphrase, see `unwrapper`).
    /// `quick`: one attempt, no retries (another passkey can answer instead).
    func manager(home: Home, quick: Bool = false) throws -> any KeyManager {
        switch type {
        case .local:
            return LocalKeyManager(source: .keyFile(path: home.localKey))
        case .passphrase:
            guard let recovery else { throw UserFacingError("passkey \(name) in \(home.kmsConfig) has no recovery key", exitCode: ExitCodes.badConfig) }
            return RecoveryKeyManager(source: .publicKey(recovery))
        default:
            guard let kms else { throw UserFacingError("passkey \(name) in \(home.kmsConfig) has no KMS configuration", exitCode: ExitCodes.badConfig) }
            return try kms.keyManager(home: home, quick: quick)
        }
    }
}

/// The home's passkeys, saved as `<home>/kms.json` (0600, docs/FORMAT.md
/// "Passkeys"). No file: the one local passkey. A file from before passkeys
/// (one KMS configuration) reads as one KMS passkey named "kms".
struct PasskeyRegistry: Codable, Equatable {
    static let version = 2

    var version = PasskeyRegistry.version
    /// The passkey new filesystems and rewraps go to first, and unlocking tries first.
    var inUse: String
    /// With 2 or more: the KMS passkeys hold Shamir shares and this many must answer.
    var threshold: Int?
    var passkeys: [Passkey]

    static func defaultRegistry(now: UInt64 = 0) -> PasskeyRegistry { PasskeyRegistry(inUse: "local", passkeys: [.local(now: now)]) }

    static func load(_ home: Home) throws -> PasskeyRegistry {
        // (The local passkey dates from its key file.)
        guard let data = FileManager.default.contents(atPath: home.kmsConfig) else { return defaultRegistry(now: modified(home.localKey)) }
        do {
            if let registry = try? JSONDecoder().decode(PasskeyRegistry.self, from: data) {
                guard registry.version == version else {
                    throw UserFacingError("\(home.kmsConfig) has version \(registry.version); this kmsfs knows \(version)", exitCode: ExitCodes.badConfig)
                }
                try registry.validate(home)
                return registry
            }
            let legacy = try JSONDecoder().decode(KMSConfiguration.self, from: data)
            guard let type = PasskeyType(rawValue: legacy.type.rawValue), type.isKMS else { return defaultRegistry(now: modified(home.localKey)) }
            return PasskeyRegistry(inUse: "kms", passkeys: [Passkey(name: "kms", type: type, created: modified(home.kmsConfig), kms: legacy)])
        } catch let error as UserFacingError { throw error } catch {
            throw UserFacingError("KMS configuration \(home.kmsConfig) is unreadable: \(error)", exitCode: ExitCodes.badConfig)
        }
    }

    /// A file's modification time (0 when it does not exist).
    private static func modified(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(max(st.st_mtim.tv_sec, 0)) : 0
    }

    private func validate(_ home: Home) throws {
        let names = passkeys.map(\.name)
        guard !passkeys.isEmpty, Set(names).count == names.count, names.contains(inUse),
              passkeys.allSatisfy({ ($0.type.isKMS ? $0.kms != nil : true) && ($0.type == .passphrase ? $0.recovery != nil : true) })
        else { throw UserFacingError("\(home.kmsConfig) is inconsistent (passkey names, in-use passkey or settings)", exitCode: ExitCodes.badConfig) }
    }

    /// Writes the registry atomically (0600); the default one removes the file.
    func save(_ home: Home) throws {
        if self == Self.defaultRegistry(now: passkeys.first?.created ?? 0), passkeys.count == 1 {
            guard unlink(home.kmsConfig) == 0 || errno == ENOENT else {
                throw UserFacingError("cannot remove \(home.kmsConfig): \(String(cString: strerror(errno)))", exitCode: ExitCodes.io)
            }
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(Array(try encoder.encode(self)) + [0x0a], to: home.kmsConfig)
    }

    func passkey(_ name: String) -> Passkey? { passkeys.first { $0.name == name } }

    /// In-use passkey first, then the others in the order they were added.
    var unlockOrder: [Passkey] { passkeys.filter { $0.name == inUse } + passkeys.filter { $0.name != inUse } }

    /// The passkey `kms set`, `kms unset` and `kms show` act on: the in-use one
    /// when it is the local key or a KMS, else the first KMS (or local) one.
    var kmsRole: Passkey? {
        if let current = passkey(inUse), current.type != .passphrase { return current }
        return passkeys.first { $0.type.isKMS } ?? passkeys.first { $0.type == .local }
    }

    /// The active KMS's configuration, as `kms show` and the anchors use it; `.local` without one.
    var kmsConfiguration: KMSConfiguration { kmsRole?.kms ?? .local }

    var thresholdValue: Int { threshold ?? 0 }

    /// Replaces `old` (by name) with `new`, keeping its place and its in-use mark.
    mutating func replace(_ old: String, with new: Passkey) {
        if let i = passkeys.firstIndex(where: { $0.name == old }) { passkeys[i] = new } else { passkeys.append(new) }
        if inUse == old { inUse = new.name }
    }

    /// `base`, or `base-2`, `base-3`... whichever no passkey has.
    func freeName(_ base: String) -> String {
        if passkey(base) == nil { return base }
        return (2...).lazy.map { "\(base)-\($0)" }.first { passkey($0) == nil }!
    }
}

/// When each passkey last unlocked a filesystem: the modification time of
/// `<home>/passkeys-used/<name>`, so a mount never rewrites kms.json.
enum PasskeyUse {
    static func directory(_ home: Home) -> String { home.path + "/passkeys-used" }

    static func record(_ names: [String], home: Home) {
        guard mkdir(directory(home), 0o700) == 0 || errno == EEXIST else { return }
        for name in names where ComponentName.isValid(name) {
            let fd = open(directory(home) + "/" + name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 { futimens(fd, nil); close(fd) }
        }
    }

    static func lastUsed(_ name: String, home: Home) -> UInt64? {
        var st = stat()
        guard stat(directory(home) + "/" + name, &st) == 0 else { return nil }
        return UInt64(max(st.st_mtim.tv_sec, 0))
    }
}

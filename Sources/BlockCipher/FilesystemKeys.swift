/// The subkeys of one filesystem, derived with HKDF-SHA256 from its random
/// master secret (the only secret the KMS wraps). Domain strings are fixed by
/// docs/FORMAT.md "Key hierarchy"; changing one is a format change.
public final class FilesystemKeys: Sendable {
    /// Size of the master secret in bytes.
    public static let masterSecretByteCount = 32
    /// Size of the key-check value stored in the superblock.
    public static let keyCheckByteCount = 32

    static let xtsInfo = "kmsfs v1 data key AES-256-XTS"
    static let nameInfo = "kmsfs v1 name key AES-256-SIV"
    static let checkInfo = "kmsfs v1 key check value"
    static let boundCheckInfo = "kmsfs v1 key check value bound to the filesystem UUID"
    static let integrityCheckInfo = "kmsfs v2 key check value bound to the filesystem UUID, integrity on"

    /// Encrypts and decrypts file contents.
    public let data: XTSCipher
    /// Encrypts names, symlink targets and xattrs.
    public let names: NameCipher
    /// A value that proves the master secret is the right one without revealing it.
    public let keyCheckValue: [UInt8]
    /// The authentication keys of a filesystem with integrity; nil for XTS only.
    public let integrity: IntegrityKeys?

    /// Derives every subkey from `masterSecret`. With `boundTo`, the
    /// key-check value also depends on the filesystem's UUID (HKDF salt), so a
    /// master secret moved into another filesystem's superblock fails the
    /// check whatever the KMS said; nil keeps the original derivation, for
    /// superblocks without the bound-key-check feature. With `integrity`
    /// (which needs `boundTo`), the key-check value is derived under another
    /// name as well, so a superblock whose integrity bit was cleared to skip
    /// the checks fails the key check instead.
    public init(masterSecret: SecretBytes, boundTo uuid: [UInt8]? = nil, integrity: Bool = false) throws {
        guard masterSecret.count == Self.masterSecretByteCount else {
            throw BlockCipherError.badKeyLength(expected: Self.masterSecretByteCount, actual: masterSecret.count)
        }
        data = try XTSCipher(key: HKDF.deriveSHA256(secret: masterSecret, salt: [], info: Self.xtsInfo, length: XTSCipher.keyByteCount))
        names = try NameCipher(key: HKDF.deriveSHA256(secret: masterSecret, salt: [], info: Self.nameInfo, length: NameCipher.keyByteCount))
        if integrity {
            guard let uuid else { throw BlockCipherError.badKeyLength(expected: 16, actual: 0) }
            self.integrity = try IntegrityKeys(masterSecret: masterSecret, uuid: uuid)
        } else {
            self.integrity = nil
        }
        let checkInfo = integrity ? Self.integrityCheckInfo : Self.boundCheckInfo
        let check = try uuid.map { try HKDF.deriveSHA256(secret: masterSecret, salt: $0, info: checkInfo, length: Self.keyCheckByteCount) }
            ?? HKDF.deriveSHA256(secret: masterSecret, salt: [], info: Self.checkInfo, length: Self.keyCheckByteCount)
        keyCheckValue = check.withUnsafeBytes { Array($0) }
    }

    /// A new random master secret.
    public static func newMasterSecret() throws -> SecretBytes {
        try SecretBytes.random(count: masterSecretByteCount)
    }
}

/// The keys that authenticate a filesystem with integrity (docs/FORMAT.md
/// "Key hierarchy"), each derived with the filesystem UUID as HKDF salt, so
/// a tag or sealed row copied from another filesystem never verifies.
public final class IntegrityKeys: Sendable {
    static let unitInfo = "kmsfs v2 data unit MAC key HMAC-SHA-256"
    static let metadataInfo = "kmsfs v2 metadata MAC key HMAC-SHA-256"
    static let attributeInfo = "kmsfs v2 inode attribute key AES-256-SIV"

    /// Tags data units (HMAC-SHA-256, truncated to 128 bits).
    public let units: MessageAuthenticator
    /// Tags directory entries and the store's counters.
    public let metadata: MessageAuthenticator
    /// Seals inode attributes (AES-256-SIV, bound to the inode number).
    public let attributes: NameCipher

    init(masterSecret: SecretBytes, uuid: [UInt8]) throws {
        units = try MessageAuthenticator(key: HKDF.deriveSHA256(secret: masterSecret, salt: uuid, info: Self.unitInfo, length: 32))
        metadata = try MessageAuthenticator(key: HKDF.deriveSHA256(secret: masterSecret, salt: uuid, info: Self.metadataInfo, length: 32))
        attributes = try NameCipher(key: HKDF.deriveSHA256(secret: masterSecret, salt: uuid, info: Self.attributeInfo, length: NameCipher.keyByteCount))
    }
}

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

    /// Encrypts and decrypts file contents.
    public let data: XTSCipher
    /// Encrypts names, symlink targets and xattrs.
    public let names: NameCipher
    /// A value that proves the master secret is the right one without revealing it.
    public let keyCheckValue: [UInt8]

    /// Derives every subkey from `masterSecret`. With `boundTo`, the
    /// key-check value also depends on the filesystem's UUID (HKDF salt), so a
    /// master secret moved into another filesystem's superblock fails the
    /// check whatever the KMS said; nil keeps the original derivation, for
    /// superblocks without the bound-key-check feature.
    public init(masterSecret: SecretBytes, boundTo uuid: [UInt8]? = nil) throws {
        guard masterSecret.count == Self.masterSecretByteCount else {
            throw BlockCipherError.badKeyLength(expected: Self.masterSecretByteCount, actual: masterSecret.count)
        }
        data = try XTSCipher(key: HKDF.deriveSHA256(secret: masterSecret, salt: [], info: Self.xtsInfo, length: XTSCipher.keyByteCount))
        names = try NameCipher(key: HKDF.deriveSHA256(secret: masterSecret, salt: [], info: Self.nameInfo, length: NameCipher.keyByteCount))
        let check = try uuid.map { try HKDF.deriveSHA256(secret: masterSecret, salt: $0, info: Self.boundCheckInfo, length: Self.keyCheckByteCount) }
            ?? HKDF.deriveSHA256(secret: masterSecret, salt: [], info: Self.checkInfo, length: Self.keyCheckByteCount)
        keyCheckValue = check.withUnsafeBytes { Array($0) }
    }

    /// A new random master secret.
    public static func newMasterSecret() throws -> SecretBytes {
        try SecretBytes.random(count: masterSecretByteCount)
    }
}

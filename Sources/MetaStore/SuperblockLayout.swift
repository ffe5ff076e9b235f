/// Byte layout of the superblock, docs/FORMAT.md section "Superblock (v1.0)".
/// All integers are little-endian.
enum SuperblockLayout {
    /// "KMSFS\0SB".
    static let magic: [UInt8] = [0x4B, 0x4D, 0x53, 0x46, 0x53, 0x00, 0x53, 0x42]
    static let formatMajor: UInt16 = 1
    static let formatMinor: UInt16 = 0
    /// Each copy occupies one slot; the file holds two slots.
    static let slotSize = 4096
    static let slotCount = 2

    static let magicOffset = 0
    static let majorOffset = 8
    static let minorOffset = 10
    static let incompatOffset = 12
    static let roCompatOffset = 16
    static let compatOffset = 20
    static let generationOffset = 24
    static let uuidOffset = 32
    static let cipherOffset = 48
    static let reserved50Offset = 50
    static let blockSizeOffset = 52
    static let createdOffset = 56
    static let keyCheckOffset = 64
    static let kmsLengthOffset = 96
    static let wrappedLengthOffset = 98
    /// With feature 0x4: the keyslot table's length (u16); bytes 102..<112 stay reserved.
    static let keyslotTableLengthOffset = 100
    /// Start of the variable part: KMS reference, then wrapped key, then SHA-256.
    static let variableOffset = 112
    static let checksumSize = 32

    /// Cipher id 1: AES-256-XTS data, AES-256-SIV names, HKDF-SHA256 subkeys.
    static let cipherXTSSIV: UInt16 = 1
    /// Incompatible feature 0x1: the key-check value is derived with the
    /// filesystem UUID as HKDF salt (docs/FORMAT.md "Key hierarchy"). A kmsfs
    /// that does not know it would report every key as wrong, so it must refuse.
    static let incompatBoundKeyCheck: UInt32 = 0x1
    /// Incompatible feature 0x2: integrity (docs/FORMAT.md "Integrity"): data
    /// units carry tags, inode rows are sealed, the metadata has schema 2 and
    /// an authenticated generation. Only with 0x1; the key-check value is
    /// derived under the integrity name, so clearing this bit fails the key check.
    static let incompatIntegrity: UInt32 = 0x2
    /// Incompatible feature 0x4: keyslots (docs/FORMAT.md "Keyslots"): the
    /// variable part is a table of named wraps (whole secrets or Shamir shares)
    /// instead of one KMS reference and one envelope. Set by the encoder when
    /// the slots need it, never kept in `Superblock.incompatFeatures`.
    static let incompatKeyslots: UInt32 = 0x4
    /// Most keyslots one superblock holds (they must also fit the 4096-byte slot).
    static let maxKeyslots = 16
    /// Feature bits this version understands.
    static let knownIncompat: UInt32 = incompatBoundKeyCheck | incompatIntegrity | incompatKeyslots
    static let knownRoCompat: UInt32 = 0
}

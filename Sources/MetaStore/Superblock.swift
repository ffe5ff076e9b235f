import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// The KMS that wraps the key, as MetaStore stores it: opaque labels that
/// KeyVault and the CLI interpret. Never a credential.
public struct StoredKMSReference: Sendable, Equatable {
    public var type: String
    public var address: String
    public var keyIdentifier: String
    public var keyVersion: String

    public init(type: String, address: String, keyIdentifier: String, keyVersion: String) {
        self.type = type
        self.address = address
        self.keyIdentifier = keyIdentifier
        self.keyVersion = keyVersion
    }
}

/// A filesystem's superblock: identity, cipher, the KMS reference, the
/// wrapped master secret and its key-check value. Never the plaintext key.
public struct Superblock: Sendable, Equatable {
    public var formatMajor: UInt16 = SuperblockLayout.formatMajor
    public var formatMinor: UInt16 = SuperblockLayout.formatMinor
    public var incompatFeatures: UInt32 = 0
    public var roCompatFeatures: UInt32 = 0
    public var compatFeatures: UInt32 = 0
    /// Bumped on every write; the copy with the highest valid generation wins.
    public var generation: UInt64 = 0
    public var uuid: [UInt8]
    public var cipher: UInt16 = SuperblockLayout.cipherXTSSIV
    public var blockSize: UInt32 = 4096
    /// Creation time, seconds since the Unix epoch.
    public var createdAt: UInt64
    public var keyCheckValue: [UInt8]
    public var kms: StoredKMSReference
    /// KeyVault's wrapped-key envelope, opaque here.
    public var wrappedKey: [UInt8]

    public init(uuid: [UInt8], createdAt: UInt64, keyCheckValue: [UInt8], kms: StoredKMSReference, wrappedKey: [UInt8]) {
        self.uuid = uuid
        self.createdAt = createdAt
        self.keyCheckValue = keyCheckValue
        self.kms = kms
        self.wrappedKey = wrappedKey
    }

    /// The UUID in its canonical 8-4-4-4-12 text form.
    public var uuidString: String {
        let h = uuid.hexString
        let c = Array(h)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    /// The UUID the key-check value is bound to, or nil for a superblock made
    /// before that feature (its value derives from the master secret alone).
    public var keyCheckBinding: [UInt8]? { incompatFeatures & SuperblockLayout.incompatBoundKeyCheck != 0 ? uuid : nil }

    /// Whether the filesystem authenticates its data and metadata (feature 0x2).
    public var hasIntegrity: Bool { incompatFeatures & SuperblockLayout.incompatIntegrity != 0 }

    /// How `fs list` and `status` name it: "on" (tags, sealed rows, anchored
    /// generation) or "none" (XTS only: --no-integrity, or made by release 1.0).
    public var integrityMode: String { hasIntegrity ? "on" : "none" }

    /// A new filesystem's superblock: the key-check value is bound to `uuid`,
    /// and with `integrity` the store is authenticated.
    public static func bound(uuid: [UInt8], createdAt: UInt64, keyCheckValue: [UInt8], kms: StoredKMSReference, wrappedKey: [UInt8], integrity: Bool) -> Superblock {
        var sb = Superblock(uuid: uuid, createdAt: createdAt, keyCheckValue: keyCheckValue, kms: kms, wrappedKey: wrappedKey)
        sb.incompatFeatures |= SuperblockLayout.incompatBoundKeyCheck | (integrity ? SuperblockLayout.incompatIntegrity : 0)
        if integrity { sb.formatMinor = 1 }
        return sb
    }

    /// Whether unknown read-only-compatible features force a read-only mount.
    public var requiresReadOnly: Bool { roCompatFeatures & ~SuperblockLayout.knownRoCompat != 0 }
}

extension Superblock {
    /// Encodes one slot (4096 bytes).
    public func encodeSlot() throws -> [UInt8] {
        typealias L = SuperblockLayout
        var kmsBytes = [UInt8]()
        for s in [kms.type, kms.address, kms.keyIdentifier, kms.keyVersion] {
            let b = Array(s.utf8)
            guard b.count <= 1024 else { throw MetaStoreError.superblock(path: "", problem: .fieldOutOfRange(field: "kms reference")) }
            kmsBytes += le16(UInt16(b.count)) + b
        }
        guard uuid.count == 16, keyCheckValue.count == 32,
              L.variableOffset + kmsBytes.count + wrappedKey.count + L.checksumSize <= L.slotSize
        else { throw MetaStoreError.superblock(path: "", problem: .fieldOutOfRange(field: "variable part")) }
        var out = L.magic + le16(formatMajor) + le16(formatMinor) + le32(incompatFeatures) + le32(roCompatFeatures) + le32(compatFeatures)
        out += le64(generation) + uuid + le16(cipher) + [0, 0] + le32(blockSize) + le64(createdAt) + keyCheckValue
        out += le16(UInt16(kmsBytes.count)) + le16(UInt16(wrappedKey.count)) + [UInt8](repeating: 0, count: 12)
        out += kmsBytes + wrappedKey
        out += SHA256.hash(out)
        out += [UInt8](repeating: 0, count: L.slotSize - out.count)
        return out
    }

    /// Decodes and validates one slot; each failure is its own problem.
    public static func decodeSlot(_ b: [UInt8]) throws(MetaStoreError.SuperblockProblem) -> Superblock {
        typealias L = SuperblockLayout
        guard b.count >= L.variableOffset else { throw .truncated(bytes: b.count) }
        guard Array(b[0..<8]) == L.magic else { throw .badMagic }
        let kmsLength = Int(u16(b, L.kmsLengthOffset)), wrappedLength = Int(u16(b, L.wrappedLengthOffset))
        let end = L.variableOffset + kmsLength + wrappedLength
        guard end + L.checksumSize <= L.slotSize else { throw .fieldOutOfRange(field: "length") }
        guard b.count >= end + L.checksumSize else { throw .truncated(bytes: b.count) }
        guard SHA256.hash(Array(b[0..<end])) == Array(b[end..<end + L.checksumSize]) else { throw .checksumMismatch }
        let major = u16(b, L.majorOffset)
        guard major == L.formatMajor else { throw .unsupportedVersion(major: major) }
        let incompat = u32(b, L.incompatOffset)
        guard incompat & ~L.knownIncompat == 0 else { throw .unknownIncompatFeatures(mask: incompat & ~L.knownIncompat) }
        guard incompat & L.incompatIntegrity == 0 || incompat & L.incompatBoundKeyCheck != 0 else { throw .fieldOutOfRange(field: "features") }
        for offset in [L.reserved50Offset, L.reserved50Offset + 1] + Array(L.reserved100Offset..<L.variableOffset) + Array(end + L.checksumSize..<min(b.count, L.slotSize)) where b[offset] != 0 {
            throw .reservedNotZero(offset: offset)
        }
        let cipher = u16(b, L.cipherOffset), blockSize = u32(b, L.blockSizeOffset)
        guard cipher == L.cipherXTSSIV else { throw .fieldOutOfRange(field: "cipher") }
        guard blockSize == 4096 else { throw .fieldOutOfRange(field: "block size") }
        var cursor = L.variableOffset
        var strings = [String]()
        for _ in 0..<4 {
            guard cursor + 2 <= L.variableOffset + kmsLength else { throw .fieldOutOfRange(field: "kms reference") }
            let n = Int(u16(b, cursor))
            cursor += 2
            guard cursor + n <= L.variableOffset + kmsLength, let s = String(validating: b[cursor..<cursor + n], as: UTF8.self) else {
                throw .fieldOutOfRange(field: "kms reference")
            }
            strings.append(s)
            cursor += n
        }
        guard cursor == L.variableOffset + kmsLength else { throw .fieldOutOfRange(field: "kms reference") }
        var sb = Superblock(uuid: Array(b[L.uuidOffset..<L.uuidOffset + 16]), createdAt: u64(b, L.createdOffset),
                            keyCheckValue: Array(b[L.keyCheckOffset..<L.keyCheckOffset + 32]),
                            kms: StoredKMSReference(type: strings[0], address: strings[1], keyIdentifier: strings[2], keyVersion: strings[3]),
                            wrappedKey: Array(b[cursor..<end]))
        sb.formatMajor = major
        sb.formatMinor = u16(b, L.minorOffset)
        sb.incompatFeatures = incompat
        sb.roCompatFeatures = u32(b, L.roCompatOffset)
        sb.compatFeatures = u32(b, L.compatOffset)
        sb.generation = u64(b, L.generationOffset)
        sb.cipher = cipher
        sb.blockSize = blockSize
        return sb
    }
}

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) } }
func u64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) } }

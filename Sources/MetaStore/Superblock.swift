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

/// One wrap of the master secret (docs/FORMAT.md "Keyslots"): by one
/// passkey, of the whole secret or of one Shamir share of it.
public struct Keyslot: Sendable, Equatable {
    /// The passkey's name in the home ("" for the only slot of a v1.0 superblock).
    public var passkey: String
    /// 0: the whole master secret; else the x coordinate of the share it wraps.
    public var share: UInt8
    public var kms: StoredKMSReference
    /// KeyVault's wrapped-key envelope, opaque here.
    public var wrappedKey: [UInt8]

    public init(passkey: String, share: UInt8 = 0, kms: StoredKMSReference, wrappedKey: [UInt8]) {
        self.passkey = passkey
        self.share = share
        self.kms = kms
        self.wrappedKey = wrappedKey
    }

    /// Longest passkey name a slot holds.
    public static let maxNameBytes = 64

    /// The rules both the encoder and the decoder hold a table to, so nothing
    /// unreadable is ever written: names are filesystem-name components (or
    /// empty), shares have distinct coordinates and a threshold between 2 and
    /// their number, whole slots none, and some slot can unlock.
    static func validate(_ slots: [Keyslot], threshold: UInt8) throws(MetaStoreError.SuperblockProblem) {
        guard !slots.isEmpty, slots.count <= SuperblockLayout.maxKeyslots else { throw .fieldOutOfRange(field: "keyslot count") }
        guard slots.allSatisfy({ $0.passkey.isEmpty || ComponentName.isValid($0.passkey) }) else { throw .fieldOutOfRange(field: "keyslot name") }
        let shares = slots.map(\.share).filter { $0 != 0 }
        guard Set(shares).count == shares.count, shares.isEmpty ? threshold == 0 : threshold >= 2 && Int(threshold) <= shares.count else {
            throw .fieldOutOfRange(field: "keyslot shares")
        }
    }
}

/// A filesystem's superblock: identity, cipher, the keyslots (wrapped
/// master secret, per passkey) and its key-check value. Never the plaintext key.
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
    /// Every wrap of the master secret, at least one. A v1.0 superblock has
    /// exactly one, unnamed and whole.
    public var keyslots: [Keyslot]
    /// How many share slots must unwrap to rebuild the secret; 0 when no slot holds a share.
    public var threshold: UInt8 = 0

    public init(uuid: [UInt8], createdAt: UInt64, keyCheckValue: [UInt8], kms: StoredKMSReference, wrappedKey: [UInt8]) {
        self.init(uuid: uuid, createdAt: createdAt, keyCheckValue: keyCheckValue, keyslots: [Keyslot(passkey: "", kms: kms, wrappedKey: wrappedKey)])
    }

    public init(uuid: [UInt8], createdAt: UInt64, keyCheckValue: [UInt8], keyslots: [Keyslot], threshold: UInt8 = 0) {
        self.uuid = uuid
        self.createdAt = createdAt
        self.keyCheckValue = keyCheckValue
        self.keyslots = keyslots
        self.threshold = threshold
    }

    /// The first slot's KMS reference: what `fs list` shows as the key.
    public var kms: StoredKMSReference {
        get { keyslots[0].kms }
        set { keyslots[0].kms = newValue }
    }

    /// The first slot's envelope.
    public var wrappedKey: [UInt8] {
        get { keyslots[0].wrappedKey }
        set { keyslots[0].wrappedKey = newValue }
    }

    /// Whether the slots need the keyslot table (feature 0x4): more than one,
    /// a named one, or shares. Otherwise the v1.0 single-wrap layout is written.
    public var needsKeyslotTable: Bool { keyslots.count != 1 || !keyslots[0].passkey.isEmpty || keyslots[0].share != 0 || threshold != 0 }

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
        bound(uuid: uuid, createdAt: createdAt, keyCheckValue: keyCheckValue, keyslots: [Keyslot(passkey: "", kms: kms, wrappedKey: wrappedKey)], integrity: integrity)
    }

    /// The same with any keyslots (and a threshold for share slots).
    public static func bound(uuid: [UInt8], createdAt: UInt64, keyCheckValue: [UInt8], keyslots: [Keyslot], threshold: UInt8 = 0, integrity: Bool) -> Superblock {
        var sb = Superblock(uuid: uuid, createdAt: createdAt, keyCheckValue: keyCheckValue, keyslots: keyslots, threshold: threshold)
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
        guard uuid.count == 16, keyCheckValue.count == 32 else { throw MetaStoreError.superblock(path: "", problem: .fieldOutOfRange(field: "identity")) }
        let table = needsKeyslotTable
        var features = incompatFeatures & ~L.incompatKeyslots
        var kmsBytes = [UInt8](), variable = [UInt8]()
        if table {
            features |= L.incompatKeyslots
            variable = try Self.encodeKeyslots(keyslots, threshold: threshold)
        } else {
            kmsBytes = try Self.encodeReference(kms)
            variable = kmsBytes + wrappedKey
        }
        guard L.variableOffset + variable.count + L.checksumSize <= L.slotSize else {
            throw MetaStoreError.superblock(path: "", problem: .fieldOutOfRange(field: "variable part (too many or too large keyslots)"))
        }
        var out = L.magic + le16(formatMajor) + le16(formatMinor) + le32(features) + le32(roCompatFeatures) + le32(compatFeatures)
        out += le64(generation) + uuid + le16(cipher) + [0, 0] + le32(blockSize) + le64(createdAt) + keyCheckValue
        out += le16(UInt16(kmsBytes.count)) + le16(UInt16(table ? 0 : wrappedKey.count))
        out += le16(UInt16(table ? variable.count : 0)) + [UInt8](repeating: 0, count: 10)
        out += variable
        out += SHA256.hash(out)
        out += [UInt8](repeating: 0, count: L.slotSize - out.count)
        return out
    }

    private static func encodeReference(_ kms: StoredKMSReference) throws -> [UInt8] {
        var out = [UInt8]()
        for s in [kms.type, kms.address, kms.keyIdentifier, kms.keyVersion] {
            let b = Array(s.utf8)
            guard b.count <= 1024 else { throw MetaStoreError.superblock(path: "", problem: .fieldOutOfRange(field: "kms reference")) }
            out += le16(UInt16(b.count)) + b
        }
        return out
    }

    /// The keyslot table: threshold, count, then per slot the name, share,
    /// KMS reference and envelope, each length-prefixed (docs/FORMAT.md "Keyslots").
    private static func encodeKeyslots(_ slots: [Keyslot], threshold: UInt8) throws -> [UInt8] {
        do { try Keyslot.validate(slots, threshold: threshold) } catch { throw MetaStoreError.superblock(path: "", problem: error) }
        var out: [UInt8] = [threshold, UInt8(slots.count)]
        for slot in slots {
            let name = Array(slot.passkey.utf8)
            guard name.count <= Keyslot.maxNameBytes, slot.wrappedKey.count <= 3072 else {
                throw MetaStoreError.superblock(path: "", problem: .fieldOutOfRange(field: "keyslot"))
            }
            out += le16(UInt16(name.count)) + name + [slot.share]
            let reference = try encodeReference(slot.kms)
            out += le16(UInt16(reference.count)) + reference + le16(UInt16(slot.wrappedKey.count)) + slot.wrappedKey
        }
        return out
    }

    /// Decodes and validates one slot; each failure is its own problem.
    public static func decodeSlot(_ b: [UInt8]) throws(MetaStoreError.SuperblockProblem) -> Superblock {
        typealias L = SuperblockLayout
        guard b.count >= L.variableOffset else { throw .truncated(bytes: b.count) }
        guard Array(b[0..<8]) == L.magic else { throw .badMagic }
        let kmsLength = Int(u16(b, L.kmsLengthOffset)), wrappedLength = Int(u16(b, L.wrappedLengthOffset))
        let tableLength = Int(u16(b, L.keyslotTableLengthOffset))
        let end = L.variableOffset + kmsLength + wrappedLength + tableLength
        guard end + L.checksumSize <= L.slotSize else { throw .fieldOutOfRange(field: "length") }
        guard b.count >= end + L.checksumSize else { throw .truncated(bytes: b.count) }
        guard SHA256.hash(Array(b[0..<end])) == Array(b[end..<end + L.checksumSize]) else { throw .checksumMismatch }
        let major = u16(b, L.majorOffset)
        guard major == L.formatMajor else { throw .unsupportedVersion(major: major) }
        let incompat = u32(b, L.incompatOffset)
        guard incompat & ~L.knownIncompat == 0 else { throw .unknownIncompatFeatures(mask: incompat & ~L.knownIncompat) }
        guard incompat & L.incompatIntegrity == 0 || incompat & L.incompatBoundKeyCheck != 0 else { throw .fieldOutOfRange(field: "features") }
        let table = incompat & L.incompatKeyslots != 0
        // Exactly one layout: the v1.0 single wrap, or (feature 0x4) the keyslot table.
        guard table ? kmsLength == 0 && wrappedLength == 0 && tableLength > 0 : tableLength == 0 else { throw .fieldOutOfRange(field: "keyslot layout") }
        for offset in [L.reserved50Offset, L.reserved50Offset + 1] + Array(L.keyslotTableLengthOffset + 2..<L.variableOffset) + Array(end + L.checksumSize..<min(b.count, L.slotSize)) where b[offset] != 0 {
            throw .reservedNotZero(offset: offset)
        }
        let cipher = u16(b, L.cipherOffset), blockSize = u32(b, L.blockSizeOffset)
        guard cipher == L.cipherXTSSIV else { throw .fieldOutOfRange(field: "cipher") }
        guard blockSize == 4096 else { throw .fieldOutOfRange(field: "block size") }
        var reader = SlotReader(bytes: b, cursor: L.variableOffset, end: end)
        let keyslots: [Keyslot], threshold: UInt8
        if table {
            (keyslots, threshold) = try reader.keyslots()
        } else {
            var limited = SlotReader(bytes: b, cursor: L.variableOffset, end: L.variableOffset + kmsLength)
            let kms = try limited.reference()
            guard limited.cursor == limited.end else { throw .fieldOutOfRange(field: "kms reference") }
            keyslots = [Keyslot(passkey: "", kms: kms, wrappedKey: Array(b[limited.cursor..<end]))]
            threshold = 0
        }
        var sb = Superblock(uuid: Array(b[L.uuidOffset..<L.uuidOffset + 16]), createdAt: u64(b, L.createdOffset),
                            keyCheckValue: Array(b[L.keyCheckOffset..<L.keyCheckOffset + 32]), keyslots: keyslots, threshold: threshold)
        sb.formatMajor = major
        sb.formatMinor = u16(b, L.minorOffset)
        sb.incompatFeatures = incompat & ~L.incompatKeyslots
        sb.roCompatFeatures = u32(b, L.roCompatOffset)
        sb.compatFeatures = u32(b, L.compatOffset)
        sb.generation = u64(b, L.generationOffset)
        sb.cipher = cipher
        sb.blockSize = blockSize
        return sb
    }
}

/// Bounds-checked reads of the superblock's variable part.
private struct SlotReader {
    let bytes: [UInt8]
    var cursor: Int
    let end: Int

    mutating func take(_ n: Int, _ field: String) throws(MetaStoreError.SuperblockProblem) -> ArraySlice<UInt8> {
        guard n >= 0, cursor + n <= end else { throw .fieldOutOfRange(field: field) }
        defer { cursor += n }
        return bytes[cursor..<cursor + n]
    }

    mutating func field(_ name: String) throws(MetaStoreError.SuperblockProblem) -> ArraySlice<UInt8> {
        let length = try take(2, name)
        return try take(Int(length.first!) | Int(length.last!) << 8, name)
    }

    mutating func string(_ name: String) throws(MetaStoreError.SuperblockProblem) -> String {
        guard let s = String(validating: try field(name), as: UTF8.self) else { throw .fieldOutOfRange(field: name) }
        return s
    }

    mutating func reference() throws(MetaStoreError.SuperblockProblem) -> StoredKMSReference {
        StoredKMSReference(type: try string("kms reference"), address: try string("kms reference"),
                           keyIdentifier: try string("kms reference"), keyVersion: try string("kms reference"))
    }

    /// The keyslot table; shares must have distinct non-zero coordinates and
    /// a threshold between 2 and their number, and whole slots none.
    mutating func keyslots() throws(MetaStoreError.SuperblockProblem) -> ([Keyslot], UInt8) {
        let head = try take(2, "keyslot table")
        let threshold = head.first!, count = Int(head.last!)
        guard count >= 1, count <= SuperblockLayout.maxKeyslots else { throw .fieldOutOfRange(field: "keyslot count") }
        var slots = [Keyslot]()
        for _ in 0..<count {
            let name = try string("keyslot name")
            let share = try take(1, "keyslot share").first!
            let reference = try field("keyslot kms reference")
            var inner = SlotReader(bytes: bytes, cursor: reference.startIndex, end: reference.endIndex)
            let kms = try inner.reference()
            guard inner.cursor == inner.end else { throw .fieldOutOfRange(field: "keyslot kms reference") }
            slots.append(Keyslot(passkey: name, share: share, kms: kms, wrappedKey: Array(try field("keyslot envelope"))))
        }
        guard cursor == end else { throw .fieldOutOfRange(field: "keyslot table") }
        try Keyslot.validate(slots, threshold: threshold)
        return (slots, threshold)
    }
}

func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
func u16(_ b: [UInt8], _ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
func u32(_ b: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[o + $1]) << (8 * UInt32($1)) } }
func u64(_ b: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) } }

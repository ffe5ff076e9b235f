/// The wrapped-key envelope (docs/FORMAT.md "Wrapped-key envelope", owner KeyVault):
/// which provider and key wrapped the secret, the provider's ciphertext, and
/// provider parameters (IV, KDF salt). Opaque to MetaStore.
public struct WrappedKey: Sendable, Equatable {
    /// Envelope magic "KVWK".
    public static let magic: [UInt8] = Array("KVWK".utf8)
    /// Envelope format version.
    public static let version: UInt8 = 1
    /// Hard limit on an encoded envelope, so a hostile length cannot make us allocate.
    public static let maxEncodedSize = 3072

    public var provider: KMSType
    /// The KMS key that wrapped it (Vault key name, KMIP UID, AWS key ARN, "keyfile"/"passphrase").
    public var keyIdentifier: String
    /// Key version when known ("1" for Vault's v1).
    public var keyVersion: String
    /// The provider's ciphertext.
    public var ciphertext: [UInt8]
    /// Provider parameters: IV/nonce, KDF salt and cost, as named fields.
    public var parameters: [String: [UInt8]]

    public init(provider: KMSType, keyIdentifier: String, keyVersion: String = "", ciphertext: [UInt8], parameters: [String: [UInt8]] = [:]) {
        self.provider = provider
        self.keyIdentifier = keyIdentifier
        self.keyVersion = keyVersion
        self.ciphertext = ciphertext
        self.parameters = parameters
    }

    /// This envelope, if it encodes within `maxEncodedSize`: the key id, ciphertext and
    /// parameters of a KMS answer are outside bytes and may be of any size.
    func checkedSize(provider name: String) throws -> WrappedKey {
        let size = encoded().count
        guard size <= Self.maxEncodedSize else {
            throw KeyVaultError.kmsError(provider: name, reason: "the answer makes a \(size)-byte wrapped key, over the \(Self.maxEncodedSize)-byte limit")
        }
        return self
    }

    /// Encodes: magic, version, provider code, then length-prefixed fields
    /// (u16 little-endian lengths), then the parameter count and pairs.
    public func encoded() -> [UInt8] {
        var out = Self.magic
        out.append(Self.version)
        out.append(provider.code)
        func field(_ bytes: [UInt8]) {
            // Truncating, not trapping: an oversized field makes the envelope longer than
            // maxEncodedSize, which checkedSize() refuses and decoding rejects.
            out.append(UInt8(truncatingIfNeeded: bytes.count))
            out.append(UInt8(truncatingIfNeeded: bytes.count >> 8))
            out.append(contentsOf: bytes)
        }
        field(Array(keyIdentifier.utf8))
        field(Array(keyVersion.utf8))
        field(ciphertext)
        out.append(UInt8(parameters.count))
        for key in parameters.keys.sorted() {
            field(Array(key.utf8))
            field(parameters[key]!)
        }
        return out
    }

    /// Decodes and validates an envelope; every length is bounds-checked.
    public init(decoding bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxEncodedSize else { throw KeyVaultError.malformedEnvelope(reason: "\(bytes.count) bytes exceeds the \(Self.maxEncodedSize)-byte limit") }
        var reader = ByteReader(bytes)
        guard try reader.take(4) == Self.magic else { throw KeyVaultError.malformedEnvelope(reason: "bad magic") }
        let version = try reader.byte()
        guard version == Self.version else { throw KeyVaultError.malformedEnvelope(reason: "unknown envelope version \(version)") }
        let code = try reader.byte()
        guard let provider = KMSType(code: code) else { throw KeyVaultError.malformedEnvelope(reason: "unknown provider code \(code)") }
        self.provider = provider
        keyIdentifier = try reader.string()
        keyVersion = try reader.string()
        ciphertext = try reader.field()
        let count = Int(try reader.byte())
        var parameters: [String: [UInt8]] = [:]
        for _ in 0..<count {
            let key = try reader.string()
            parameters[key] = try reader.field()
        }
        self.parameters = parameters
        guard reader.isAtEnd else { throw KeyVaultError.malformedEnvelope(reason: "trailing bytes") }
    }
}

/// Bounds-checked little-endian reader for the envelope codec.
struct ByteReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func take(_ n: Int) throws -> [UInt8] {
        guard n >= 0, bytes.count - offset >= n else { throw KeyVaultError.malformedEnvelope(reason: "truncated") }
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    mutating func byte() throws -> UInt8 { try take(1)[0] }

    mutating func field() throws -> [UInt8] {
        let length = try take(2)
        return try take(Int(length[0]) | Int(length[1]) << 8)
    }

    mutating func string() throws -> String {
        let raw = try field()
        guard let s = String(validating: raw, as: UTF8.self) else { throw KeyVaultError.malformedEnvelope(reason: "field is not UTF-8") }
        return s
    }
}

/// The kinds of KMS that can wrap a filesystem key.
public enum KMSType: String, Sendable, Codable, CaseIterable {
    /// The embedded default: a key file (or passphrase) in the kmsfs home.
    case local
    /// HashiCorp Vault / OpenBao transit.
    case vault
    /// A KMIP 1.2+ server.
    case kmip
    /// AWS KMS.
    case aws

    /// Stable one-byte code used in the envelope and superblock (docs/FORMAT.md).
    public var code: UInt8 {
        switch self {
        case .local: return 1
        case .vault: return 2
        case .kmip: return 3
        case .aws: return 4
        }
    }

    public init?(code: UInt8) {
        guard let t = KMSType.allCases.first(where: { $0.code == code }) else { return nil }
        self = t
    }
}

/// Which KMS key protects a filesystem key: shown by `fs list` and stored in
/// the superblock. Never contains a credential.
public struct KMSReference: Sendable, Equatable, Codable {
    public var type: KMSType
    /// Vault URL, KMIP host:port, AWS region or endpoint; the key file path for local.
    public var address: String
    /// Vault key name, KMIP key UID, AWS key id/ARN/alias; "keyfile" or "passphrase" for local.
    public var keyIdentifier: String
    /// Key version when the KMS reports one (Vault "v2"), else empty.
    public var keyVersion: String

    public init(type: KMSType, address: String, keyIdentifier: String, keyVersion: String = "") {
        self.type = type
        self.address = address
        self.keyIdentifier = keyIdentifier
        self.keyVersion = keyVersion
    }
}

/// What a wrapped key is bound to: the KMS is asked to refuse unwrapping it
/// for any other filesystem (as associated data or encryption context where the KMS supports it).
public struct WrapContext: Sendable, Equatable {
    /// The filesystem's UUID as 16 bytes.
    public var filesystemUUID: [UInt8]

    public init(filesystemUUID: [UInt8]) {
        self.filesystemUUID = filesystemUUID
    }

    /// Associated data bytes: a domain string and the UUID.
    public var associatedData: [UInt8] { Array("kmsfs-wrap-v1:".utf8) + filesystemUUID }
}

/// Health of a KMS as `kmsfs security kms` shows it.
public struct KMSHealth: Sendable, Codable, Equatable {
    /// Whether the KMS answered.
    public var reachable: Bool
    /// Provider-specific facts (key version, token TTL...), never a secret.
    public var details: [String: String]

    public init(reachable: Bool, details: [String: String] = [:]) {
        self.reachable = reachable
        self.details = details
    }
}

/// A KMS that wraps and unwraps filesystem master secrets. Every backend
/// (local, Vault transit, KMIP, AWS KMS) speaks its real protocol behind this.
/// Calls may block on the network: use them in CLI flows, never in FUSE callbacks.
public protocol KeyManager: Sendable {
    /// The KMS and key this manager uses.
    var reference: KMSReference { get }
    /// Wraps `secret` for the filesystem in `context`.
    func wrap(_ secret: KeyMaterial, context: WrapContext) throws -> WrappedKey
    /// Unwraps a key this provider wrapped.
    func unwrap(_ wrapped: WrappedKey, context: WrapContext) throws -> KeyMaterial
    /// Re-wraps under the latest key version, or under `newKeyIdentifier` when given.
    func rewrap(_ wrapped: WrappedKey, context: WrapContext, newKeyIdentifier: String?) throws -> WrappedKey
    /// Checks that the KMS answers and describes the key.
    func health() throws -> KMSHealth
}

extension KeyManager {
    /// Default rewrap: unwrap and wrap again (for providers without a server-side rewrap).
    public func rewrapByRoundTrip(_ wrapped: WrappedKey, context: WrapContext, using target: any KeyManager) throws -> WrappedKey {
        let secret = try unwrap(wrapped, context: context)
        return try target.wrap(secret, context: context)
    }

    /// Wraps a random probe and unwraps it again: proves the key works before anything is saved.
    public func roundTripCheck() throws {
        var probe = [UInt8](repeating: 0, count: 32)
        for i in probe.indices { probe[i] = UInt8(truncatingIfNeeded: i &* 37 &+ 11) }
        let context = WrapContext(filesystemUUID: [UInt8](repeating: 0xA5, count: 16))
        let material = KeyMaterial(copying: probe.withUnsafeBytes { $0 })
        let wrapped = try wrap(material, context: context)
        let back = try unwrap(wrapped, context: context)
        let same = back.withUnsafeBytes { Array($0) } == probe
        guard same else { throw KeyVaultError.kmsError(provider: reference.type.rawValue, reason: "wrap/unwrap round trip returned different bytes") }
    }
}

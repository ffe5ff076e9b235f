import Foundation
import HTTPTransport

/// Rollback anchors in a Vault/OpenBao KV version 2 secrets engine, written
/// with check-and-set (docs/FORMAT.md "Rollback anchors"): the secret
/// `<mount>/data/kmsfs/anchors/<path>` holds `{"generation": "<n>"}`, and a
/// write names the version it replaces, so two writers never silently
/// overwrite each other and the generation is never lowered. The token's
/// policy needs `create`, `read` and `update` on `<mount>/data/kmsfs/anchors/*`.
public struct VaultAnchorStore: Sendable {
    let client: VaultClient
    public let mount: String

    init(client: VaultClient, mount: String) {
        self.client = client
        self.mount = mount
    }

    public struct Record: Sendable, Equatable {
        public var generation: UInt64
        /// The KV version of the secret (check-and-set writes name it).
        public var version: Int
    }

    func secretPath(_ path: String) -> String { "\(mount)/data/kmsfs/anchors/\(path)" }

    /// The anchor at `path`, nil when none was written yet.
    public func read(_ path: String) throws -> Record? {
        let response = try client.call("GET", secretPath(path), capability: "read", accept: [404])
        guard response.status != 404 else { return nil }
        let outer = try VaultClient.data(response)
        guard let data = outer["data"] as? [String: Any], let metadata = outer["metadata"] as? [String: Any],
              let text = data["generation"] as? String, let generation = UInt64(text), let version = (metadata["version"] as? NSNumber)?.intValue
        else { throw KeyVaultError.kmsError(provider: "vault", reason: "the anchor at \(secretPath(path)) is not one kmsfs wrote") }
        return Record(generation: generation, version: version)
    }

    /// Writes `generation` if the secret is still at `version` (0: does not
    /// exist yet). Returns false when another writer came first (check-and-set
    /// mismatch): read again and decide.
    public func write(_ path: String, generation: UInt64, replacing version: Int) throws -> Bool {
        let body = Array(#"{"options":{"cas":\#(version)},"data":{"generation":"\#(generation)"}}"#.utf8)
        let response = try client.call("POST", secretPath(path), body: body, capability: version == 0 ? "create" : "update", accept: [400])
        guard response.status == 400 else { return true }
        let text = VaultClient.errors(in: response)
        guard text.contains("check-and-set") else {
            throw KeyVaultError.kmsError(provider: "vault", reason: "POST \(secretPath(path)) answered HTTP 400: \(text)")
        }
        return false
    }
}

import BlockCipher
import Foundation
import KeyVault
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// The same anchor in Vault's KV version 2 engine (`kms set vault
/// --anchor-mount`), per filesystem instance: it holds against someone who can
/// write the home as well as the store, and follows the filesystem to another
/// host that uses the same Vault. Written with check-and-set.
struct VaultAnchor: Sendable {
    let store: VaultAnchorStore
    let name: String
    /// `<uuid>/<instance, 32 hex digits>` under `<mount>/data/kmsfs/anchors/`.
    let path: String

    init(store: VaultAnchorStore, name: String, superblock: Superblock, instance: [UInt8]) {
        self.store = store
        self.name = name
        path = superblock.uuidString + "/" + instance.hexString
    }

    var place: String { "\(store.mount)/kmsfs/anchors/\(path)" }

    /// Refuses a store older than the Vault anchor unless `accept`; then anchors there.
    func check(generation: UInt64, accept: Bool) throws {
        if let record = try store.read(path), record.generation > generation, !accept {
            throw UserFacingError("filesystem \(name) was rolled back: its store is at generation \(generation), older than generation \(record.generation) in the Vault anchor \(place)",
                                  hint: "if you restored an older copy on purpose, mount it with --accept-rollback", exitCode: ExitCodes.corruptOrUnsupported)
        }
        try advance(to: generation, allowLower: accept)
    }

    /// Writes `generation` (never lower, unless `allowLower`), retrying a
    /// check-and-set conflict with what the other writer left.
    func advance(to generation: UInt64, allowLower: Bool = false) throws {
        for _ in 0..<3 {
            let record = try store.read(path)
            if let record, record.generation == generation || (record.generation > generation && !allowLower) { return }
            if try store.write(path, generation: generation, replacing: record?.version ?? 0) { return }
        }
        throw UserFacingError("the Vault anchor \(place) keeps changing under kmsfs: is filesystem \(name) mounted on another host?", exitCode: ExitCodes.corruptOrUnsupported)
    }
}

/// The mount daemon's anchors: advanced after snapshots, at unmount, and
/// while the generation moves (every fsync moves it) — the home's once a
/// second, so a daemon killed after fsyncs leaves it at most about a second
/// behind, and Vault's at most every 30 s, to keep the traffic small.
final class AnchorKeeper: Sendable {
    let anchor: RollbackAnchor
    let remote: VaultAnchor?
    private let metadata: MetadataStore
    private struct Written {
        var home: UInt64 = 0
        var remote: UInt64 = 0
        var remoteAt = Date.distantPast
    }
    private let written = Locked(Written())
    static let remoteInterval: TimeInterval = 30

    init(_ anchor: RollbackAnchor, remote: VaultAnchor?, metadata: MetadataStore) {
        self.anchor = anchor
        self.remote = remote
        self.metadata = metadata
    }

    var state: RollbackAnchor.State { RollbackAnchor.State(generation: metadata.durableGeneration, instance: metadata.instance) }

    /// Refuses a rolled-back store (either anchor), then anchors it.
    func check(accept: Bool) throws {
        let now = state
        try anchor.check(now, accept: accept)
        try remote?.check(generation: now.generation, accept: accept)
        written.withLock { $0 = Written(home: now.generation, remote: now.generation, remoteAt: Date()) }
    }

    /// Anchors the store's current state (serialised: an anchor never goes
    /// down). `force`: Vault's too, whenever it is behind (snapshot, unmount).
    func advance(force: Bool = false) throws {
        try written.withLock { w in
            let now = state
            if now.generation > w.home {
                try anchor.advance(to: now)
                w.home = now.generation
            }
            if let remote, now.generation > w.remote, force || Date().timeIntervalSince(w.remoteAt) >= Self.remoteInterval {
                try remote.advance(to: now.generation)
                w.remote = now.generation
                w.remoteAt = Date()
            }
        }
    }

    /// Advances the anchors every second until the process exits.
    func startPeriodic() {
        let thread = Thread { [self] in
            while true {
                sleep(1)
                do { try advance() } catch { writeStderr("kmsfs: \(UserFacingError.from(error).message)\n") }
            }
        }
        thread.name = "kmsfs-anchor"
        thread.start()
    }
}

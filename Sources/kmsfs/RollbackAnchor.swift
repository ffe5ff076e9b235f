import BlockCipher
import Foundation
import KeyVault
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// The rollback anchor of one filesystem with integrity: the highest store
/// generation this home has seen and which copy of the filesystem it was
/// (the store's instance), in `<home>/anchors/<name>.<uuid>` (docs/FORMAT.md
/// "Rollback anchors"). Someone who can write the store but not the home
/// cannot make an older copy of the store, or another copy with the same UUID
/// and keys (an imported twin), pass for the current one. The name is part of
/// the file name because an imported copy may live in the same home.
struct RollbackAnchor: Sendable {
    let home: Home
    let superblock: Superblock
    let name: String

    var path: String { home.anchors + "/" + name + "." + superblock.uuidString }

    struct State: Equatable {
        var generation: UInt64
        var instance: [UInt8]
    }

    /// The anchored state, nil when this home never mounted the filesystem.
    func read() throws -> State? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let fields = String(decoding: data, as: UTF8.self).split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard fields.count == 4, fields[0] == "kmsfs-anchor", fields[1] == "1", let generation = UInt64(fields[2]),
              let instance = [UInt8](hexString: fields[3]), instance.count == 16
        else {
            throw UserFacingError("rollback anchor \(path) is damaged", hint: "remove it only if you trust the store as it is", exitCode: ExitCodes.corruptOrUnsupported)
        }
        return State(generation: generation, instance: instance)
    }

    /// Refuses a store older than the anchor, or another instance of the
    /// filesystem, unless `accept` (a deliberate restore, recorded in the
    /// audit log); then anchors at the store's state.
    func check(_ store: State, accept: Bool) throws {
        if let anchored = try read() {
            let problem = anchored.instance != store.instance
                ? "its store is another copy of it (instance \(store.instance.hexString.prefix(8))…) than the one this home last mounted (\(anchored.instance.hexString.prefix(8))…)"
                : store.generation < anchored.generation
                ? "its store is at generation \(store.generation), older than generation \(anchored.generation) that this home last saw" : nil
            if let problem {
                guard accept else {
                    throw UserFacingError("filesystem \(name) was rolled back: \(problem)",
                                          hint: "if you restored an older copy on purpose, mount it with --accept-rollback", exitCode: ExitCodes.corruptOrUnsupported)
                }
                AuditLog.record(home, "rollback-accepted", ["filesystem": name, "uuid": superblock.uuidString,
                                                            "from": String(anchored.generation), "to": String(store.generation)])
                try write(store)
                return
            }
        }
        try advance(to: store)
    }

    /// Moves the anchor up to `store` (never down, never to another instance).
    func advance(to store: State) throws {
        if let anchored = try read(), anchored.instance == store.instance, anchored.generation >= store.generation { return }
        try write(store)
    }

    /// Forgets the anchor (the filesystem is deleted).
    func remove() {
        unlink(path)
    }

    private func write(_ state: State) throws {
        try home.ensure()
        try AtomicFile.write(Array("kmsfs-anchor 1 \(state.generation) \(state.instance.hexString)\n".utf8), to: path)
    }
}

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

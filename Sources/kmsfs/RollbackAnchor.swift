import BlockCipher
import Foundation
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

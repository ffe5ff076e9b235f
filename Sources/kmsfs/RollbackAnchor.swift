import Foundation
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// The rollback anchor of one filesystem with integrity: the highest store
/// generation this home has seen, in `<home>/anchors/<name>.<uuid>`
/// (docs/FORMAT.md "Rollback anchors"). Someone who can write the store but
/// not the home cannot make an older copy of the store pass for the current
/// one. The name is part of the key because an imported copy keeps its
/// source's UUID and may live in the same home under another name.
struct RollbackAnchor {
    let home: Home
    let superblock: Superblock
    let name: String

    var path: String { home.anchors + "/" + name + "." + superblock.uuidString }

    /// The anchored generation, nil when this home never mounted the filesystem.
    func read() throws -> UInt64? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let fields = String(decoding: data, as: UTF8.self).split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard fields.count == 3, fields[0] == "kmsfs-anchor", fields[1] == "1", let generation = UInt64(fields[2]) else {
            throw UserFacingError("rollback anchor \(path) is damaged", hint: "remove it only if you trust the store as it is", exitCode: ExitCodes.corruptOrUnsupported)
        }
        return generation
    }

    /// Refuses a store older than the anchor unless `accept` (a deliberate
    /// restore, recorded in the audit log), then anchors at `generation`.
    func check(generation: UInt64, accept: Bool) throws {
        if let anchored = try read(), generation < anchored {
            guard accept else {
                throw UserFacingError("filesystem \(name) was rolled back: its store is at generation \(generation), older than generation \(anchored) that this home last saw",
                                      hint: "if you restored an older copy on purpose, mount it with --accept-rollback", exitCode: ExitCodes.corruptOrUnsupported)
            }
            AuditLog.record(home, "rollback-accepted", ["filesystem": name, "uuid": superblock.uuidString, "from": String(anchored), "to": String(generation)])
            try write(generation)
            return
        }
        try advance(to: generation)
    }

    /// Moves the anchor up to `generation` (never down).
    func advance(to generation: UInt64) throws {
        if let anchored = try read(), anchored >= generation { return }
        try write(generation)
    }

    /// Forgets the anchor (the filesystem is deleted).
    func remove() {
        unlink(path)
    }

    private func write(_ generation: UInt64) throws {
        try home.ensure()
        try AtomicFile.write(Array("kmsfs-anchor 1 \(generation)\n".utf8), to: path)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// renameat2(2) flags (linux/fs.h), which Glibc's module does not export.
public enum RenameFlags {
    public static let noReplace: UInt32 = 1
    public static let exchange: UInt32 = 2
}

extension Catalog {
    /// rename(2) with RENAME_NOREPLACE and RENAME_EXCHANGE. Returns the inode a
    /// plain rename replaced (with its new link count), so the caller can free it.
    func rename(parent: InodeNumber, name: [UInt8], newParent: InodeNumber, newName: [UInt8], flags: UInt32) throws -> InodeAttributes? {
        let noReplace = flags & RenameFlags.noReplace != 0
        let exchange = flags & RenameFlags.exchange != 0
        guard flags & ~(RenameFlags.noReplace | RenameFlags.exchange) == 0, !(noReplace && exchange) else { throw MetaStoreError.posix(EINVAL) }
        return try transaction {
            _ = try directory(parent)
            _ = try directory(newParent)
            let oldSealed = try sealName(name, parent: parent)
            let newSealed = try sealName(newName, parent: newParent)
            guard let sourceIno = try entry(parent, oldSealed) else { throw MetaStoreError.posix(ENOENT) }
            var source = try attributes(sourceIno)
            let targetIno = try entry(newParent, newSealed)
            let now = Timestamp.now()
            if source.isDirectory && parent != newParent { try refuseLoop(moving: sourceIno, into: newParent) }

            if exchange {
                guard let targetIno else { throw MetaStoreError.posix(ENOENT) }
                var target = try attributes(targetIno)
                if target.isDirectory && parent != newParent { try refuseLoop(moving: targetIno, into: parent) }
                try setEntry(parent, oldSealed, to: targetIno)
                try setEntry(newParent, newSealed, to: sourceIno)
                if parent != newParent {
                    if source.isDirectory { source.parent = newParent }
                    if target.isDirectory { target.parent = parent }
                    let delta: Int32 = (source.isDirectory ? 1 : 0) - (target.isDirectory ? 1 : 0)
                    try adjustParents(parent, newParent, delta: delta, now: now)
                } else {
                    try adjustParents(parent, newParent, delta: 0, now: now)
                }
                source.ctime = now
                target.ctime = now
                try store(source)
                try store(target)
                return nil
            }

            var replaced: InodeAttributes?
            if let targetIno {
                guard !noReplace else { throw MetaStoreError.posix(EEXIST) }
                if targetIno == sourceIno { return nil }
                var target = try attributes(targetIno)
                if source.isDirectory {
                    guard target.isDirectory else { throw MetaStoreError.posix(ENOTDIR) }
                    try requireEmpty(targetIno)
                    target.nlink = 0
                } else {
                    guard !target.isDirectory else { throw MetaStoreError.posix(EISDIR) }
                    try target.adjustLinks(by: -1)
                }
                target.ctime = now
                try deleteEntry(newParent, newSealed)
                try store(target)
                if target.isDirectory {
                    var dir = try attributes(newParent)
                    try dir.adjustLinks(by: -1)
                    try store(dir)
                }
                replaced = target
            }
            try deleteEntry(parent, oldSealed)
            try insertEntry(newParent, newSealed, sourceIno)
            if source.isDirectory && parent != newParent {
                source.parent = newParent
                try adjustParents(parent, newParent, delta: 1, now: now)
            } else {
                try adjustParents(parent, newParent, delta: 0, now: now)
            }
            source.ctime = now
            try store(source)
            return replaced
        }
    }

    /// EINVAL when `directory` would move into its own subtree.
    private func refuseLoop(moving directory: InodeNumber, into newParent: InodeNumber) throws {
        var cursor = newParent
        var steps = 0
        while cursor != .root {
            if cursor == directory { throw MetaStoreError.posix(EINVAL) }
            cursor = try attributes(cursor).parent
            steps += 1
            if steps > 1_000_000 { throw MetaStoreError.corruptRecord(what: "parent chain of inode \(newParent)") }
        }
        if directory == .root { throw MetaStoreError.posix(EINVAL) }
    }

    /// Updates both parents' times; `delta` subdirectories move from old to new parent.
    private func adjustParents(_ old: InodeNumber, _ new: InodeNumber, delta: Int32, now: Timestamp) throws {
        var oldDir = try attributes(old)
        if old == new {
            try touchDirectory(&oldDir, now: now)
            return
        }
        try touchDirectory(&oldDir, nlinkDelta: -delta, now: now)
        var newDir = try attributes(new)
        try touchDirectory(&newDir, nlinkDelta: delta, now: now)
    }
}

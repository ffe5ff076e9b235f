import MetaStore
import Locking

/// An inode with open handles: its ciphertext file and its data lock.
final class OpenInode: Sendable {
    let ino: InodeNumber
    let data: DataFile
    let lock = ReadWriteLock()

    init(ino: InodeNumber, data: DataFile) {
        self.ino = ino
        self.data = data
    }
}

/// Kernel lookup counts and open handles per inode. An inode whose last name
/// is gone is deleted only when the kernel has forgotten it and no handle is
/// open (unlink of an open file keeps its data readable).
///
/// Lock order: `state` may be taken while holding an `OpenInode.lock`, never the reverse.
final class InodeTable: Sendable {
    private struct State {
        var lookups: [UInt64: UInt64] = [:]
        var open: [UInt64: (inode: OpenInode, handles: Int)] = [:]
    }
    private let state = Locked(State())

    func remember(_ ino: InodeNumber, count: UInt64 = 1) {
        guard ino != .root else { return }
        state.withLock { $0.lookups[ino.rawValue, default: 0] += count }
    }

    /// Returns true when the inode is now unreferenced by the kernel and by handles.
    func forget(_ ino: InodeNumber, count: UInt64) -> Bool {
        state.withLock { s in
            let left = (s.lookups[ino.rawValue] ?? 0) - min(count, s.lookups[ino.rawValue] ?? 0)
            s.lookups[ino.rawValue] = left == 0 ? nil : left
            return left == 0 && s.open[ino.rawValue] == nil
        }
    }

    /// Opens a handle, opening the ciphertext file on the first one.
    func open(_ ino: InodeNumber, _ make: () throws -> DataFile) throws -> OpenInode {
        try state.withLock { s in
            if let entry = s.open[ino.rawValue] {
                s.open[ino.rawValue] = (entry.inode, entry.handles + 1)
                return entry.inode
            }
            let inode = OpenInode(ino: ino, data: try make())
            s.open[ino.rawValue] = (inode, 1)
            return inode
        }
    }

    func handle(_ ino: InodeNumber) -> OpenInode? {
        state.withLock { $0.open[ino.rawValue]?.inode }
    }

    /// Closes a handle; returns true when it was the last one and the kernel has forgotten the inode.
    func release(_ ino: InodeNumber) -> Bool {
        state.withLock { s in
            guard let entry = s.open[ino.rawValue] else { return false }
            if entry.handles > 1 {
                s.open[ino.rawValue] = (entry.inode, entry.handles - 1)
                return false
            }
            s.open[ino.rawValue] = nil
            return s.lookups[ino.rawValue] == nil
        }
    }

    func isReferenced(_ ino: InodeNumber) -> Bool {
        state.withLock { $0.lookups[ino.rawValue] != nil || $0.open[ino.rawValue] != nil }
    }

    func allOpen() -> [OpenInode] { state.withLock { $0.open.values.map(\.inode) } }
}

import BlockCipher
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// The filesystem operations over MetaStore and the ciphertext files, with
/// plain Swift signatures: each either returns its result or throws an
/// `Errno`. Only `FuseSession`'s trampolines know about `fuse_req_t`, so each
/// request gets exactly one reply and these ops are testable without a kernel.
public final class FileSystem: Sendable {
    /// How long the kernel may cache attributes and entries, in seconds. Long,
    /// because nothing changes a store behind the kernel's back: the mount
    /// daemon holds the store's lock, and every change comes through this
    /// mount, where the kernel invalidates what it touches (link, unlink, rename).
    public static let cacheTimeout = 30.0
    let metadata: MetadataStore
    let dataStore: DataStore
    let table = InodeTable()
    let readOnly: Bool
    let storeRoot: String
    /// Data-changing operations pass it; a snapshot pauses it so that data
    /// and metadata are copied at one point in time.
    let gate = PauseGate()
    /// Counters for `kmsfs status`.
    public let activity = MountStatistics()

    public init(metadata: MetadataStore, dataStore: DataStore, storeRoot: String, readOnly: Bool) {
        self.metadata = metadata
        self.dataStore = dataStore
        self.readOnly = readOnly
        self.storeRoot = storeRoot
    }

    /// Deletes inodes left unlinked-but-open by a crash. Run before mounting.
    public func removeOrphans() throws -> Int {
        let orphans = try metadata.orphans()
        for ino in orphans { try purge(ino) }
        return orphans.count
    }

    /// Flushes pending metadata, settles the tags of closed files and records
    /// the content digest of every file written since; called at unmount.
    public func shutdown() { flushForUnmount() }

    /// The unmount's flush; also run on `kmsfs umount`'s request while the
    /// mount still runs (with writers paused), so the last one has little left.
    public func flushForUnmount() {
        if !readOnly {
            do { try settleEverything() } catch { FuseLog.error("settling unit tags at unmount: \(error)") }
            do { try recordContentDigests(strict: false) } catch { FuseLog.error("recording content digests at unmount: \(error)") }
        }
        do { try metadata.sync(advance: !readOnly) } catch { FuseLog.error("flushing metadata at unmount: \(error)") }
    }

    /// Writes the held-back units (copy-before-write batches,
    /// `DataFile.flushDeferred`) of every open file that has some: before a
    /// snapshot is taken or deleted (writers paused), and from the periodic
    /// flusher (`olderThan`: only those that waited that long, nanoseconds).
    /// Every file is tried; the first failure is thrown after the others were written.
    public func flushHeldBackWrites(olderThan age: UInt64 = 0) throws {
        var first: (any Error)?
        for id in dataStore.filesWithDeferredWrites {
            guard let inode = table.handle(InodeNumber(id)) else { continue }
            do { try inode.lock.writing { try inode.data.flushDeferred(olderThan: age) } } catch {
                FuseLog.error("writing held-back units of inode \(inode.ino): \(error)")
                if first == nil { first = error }
            }
        }
        if let first { throw first }
    }

    /// Before a snapshot's metadata copy, with writers paused: every file's
    /// tags are settled and its content digest recorded, so the snapshot's
    /// image holds the digest a view or an import checks its data against.
    /// A file that does not verify fails the snapshot.
    public func sealForSnapshot() throws {
        guard !readOnly else { return }
        try settleEverything()
        try recordContentDigests(strict: true)
    }

    /// Settles the tags of closed files and of files still open: the kernel
    /// sends RELEASE asynchronously, so a file closed just before the unmount
    /// may still be open here. One syncfs first makes every unit durable.
    func settleEverything() throws {
        try flushHeldBackWrites()
        try dataStore.syncAll()
        try dataStore.settleClosedFiles()
        for inode in table.allOpen() {
            try inode.lock.writing { try inode.data.settle(inode.data.unsettledTags()) }
        }
    }

    /// The content digests of the files whose tags changed since the last
    /// clean unmount (or that a crash left pending), once their tag files
    /// are durable and settled. Not `strict` (unmount): a file that cannot be
    /// digested (a unit that does not verify) is logged and stays pending.
    func recordContentDigests(strict: Bool) throws {
        let pending = try metadata.filesWithPendingTags()
        guard !pending.isEmpty else { return }
        var digests: [(InodeNumber, [UInt8])] = []
        for ino in pending {
            do {
                digests.append((ino, try dataStore.contentDigest(ino.fileID, size: try metadata.attributes(ino).size)))
            } catch {
                if strict { throw error }
                FuseLog.error("inode \(ino): its content digest stays unrecorded: \(error)")
            }
        }
        try dataStore.syncAll()  // the settled records the digests describe
        try metadata.setContentDigests(digests)
    }

    func purge(_ ino: InodeNumber) throws {
        try gate.pass {
            try dataStore.remove(ino.fileID)
            try metadata.purge(ino)
        }
        metadata.refillReserve()
    }

    /// Runs `body` with every data-changing operation finished and held back.
    public func paused<R>(_ body: () throws -> R) rethrows -> R { try gate.paused(body) }

    /// Deletes `node` if no name, kernel reference or handle keeps it.
    func purgeIfUnreferenced(_ node: InodeAttributes) {
        guard node.nlink == 0, !table.isReferenced(node.ino) else { return }
        do { try purge(node.ino) } catch { FuseLog.error("removing inode \(node.ino): \(error)") }
    }

    func checkWritable() throws {
        if readOnly { throw Errno(EROFS) }
    }

    /// Runs `body`, converting any error into an `Errno` with context for the log.
    func run<R>(_ context: @autoclosure () -> String, _ body: () throws -> R) throws -> R {
        do { return try body() } catch {
            if case MetaStoreError.tampered = error { activity.countIntegrityFailure() }
            throw Errno.from(error, context())
        }
    }
}

/// Caller identity of a request.
public struct Caller: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var umask: UInt32
    public init(uid: UInt32, gid: UInt32, umask: UInt32) {
        self.uid = uid
        self.gid = gid
        self.umask = umask
    }
}

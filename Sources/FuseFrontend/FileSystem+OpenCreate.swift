import Foundation
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

extension FileSystem {
    /// open(2): handles are per inode; O_TRUNC is done here (FUSE_CAP_ATOMIC_O_TRUNC).
    public func open(_ ino: InodeNumber, flags: Int32) throws {
        let accessMode = flags & O_ACCMODE
        if accessMode != O_RDONLY || flags & O_TRUNC != 0 { try checkWritable() }
        let a = try attributes(ino)
        guard !a.isDirectory else { throw Errno(EISDIR) }
        guard a.isRegular else { throw Errno.invalid }
        _ = try run("open \(ino)") { try openData(ino) }
        if flags & O_TRUNC != 0 && a.size > 0 {
            do {
                _ = try setAttributes(ino, AttributeChanges(size: 0))
            } catch {
                _ = table.release(ino)
                throw error
            }
        }
        activity.countOpen(1)
    }

    /// create(2): a new regular file, opened.
    public func create(parent: InodeNumber, name: [UInt8], mode: UInt32, caller: Caller) throws -> InodeAttributes {
        let a = try makeNode(parent: parent, name: name, mode: UInt32(S_IFREG) | (mode & 0o7777), rdev: 0, caller: caller)
        _ = try run("create \(a.ino)") { try openData(a.ino, fresh: true) }
        activity.countOpen(1)
        return a
    }

    public func release(_ ino: InodeNumber) { release(ino, counted: true) }

    /// Closes a handle (`counted`: one the kernel opened, shown in `status`).
    func release(_ ino: InodeNumber, counted: Bool) {
        if counted { activity.countOpen(-1) }
        if let inode = table.handle(ino) {
            do { try inode.lock.writing { try inode.data.flushDeferred() } } catch { FuseLog.error("writing deferred units of inode \(ino): \(error)") }
        }
        if table.release(ino), let a = try? metadata.attributes(ino) { purgeIfUnreferenced(a) }
        if dataStore.mustSettle {
            // Closed files hold many unsettled units: settle them now, with writers held back.
            do { try paused { try dataStore.settleClosedFiles() } } catch { FuseLog.error("settling unit tags: \(error)") }
        }
    }

    /// fsync: the tag and ciphertext files and the metadata (a durable commit).
    /// Tags written before the sync settle after it (old unit copies stop
    /// verifying); the sync itself runs without the inode lock. The three
    /// syncs (tag file, ciphertext file, metadata) run at once: none needs
    /// another on disk first (see `DataFile.syncTags`; the metadata's new
    /// generation describes no data), and an fsync then waits for about one
    /// device flush instead of three.
    public func fsync(_ ino: InodeNumber, dataOnly: Bool) throws {
        try run("fsync \(ino)") {
            let inode = table.handle(ino)
            // Held-back writes (copy-before-write batches) go to the file first, then the syncs cover them.
            let unsettled = try inode.map { i in try i.lock.writing { () throws -> UnsettledTags in
                try i.data.flushDeferred()
                return i.data.unsettledTags()
            } }
            let failures = Locked<[Error]>([])
            let (metadata, readOnly) = (self.metadata, self.readOnly)
            func attempt(_ body: @escaping @Sendable () throws -> Void) -> @Sendable () -> Void {
                { do { try body() } catch { failures.withLock { $0.append(error) } } }
            }
            var syncs = [attempt { try metadata.sync(advance: !readOnly, checkpoint: false, dataOnly: dataOnly) }]
            if let inode { syncs += [attempt { try inode.data.syncUnits(dataOnly: dataOnly) }, attempt { try inode.data.syncTags() }] }
            runConcurrently(syncs)
            if let failure = failures.withLock({ $0.first }) { throw failure }
            // The data is durable now; settling only narrows how long old unit copies verify.
            if let inode, let unsettled {
                do { try inode.lock.writing { try inode.data.settle(unsettled) } } catch { FuseLog.error("settling unit tags of inode \(ino): \(error)") }
            }
        }
    }

    /// fsyncdir: metadata only.
    public func syncMetadata() throws {
        try run("fsync metadata") { try metadata.sync(advance: !readOnly, checkpoint: false) }
    }

    /// Opens a handle on a file's data; the first one checks the file against
    /// the content digest its inode's sealed row holds (integrity on), outside
    /// the table's lock: hashing a large tag file, or reading a snapshot
    /// view's file whole, must not stall other files.
    /// An inline file's unit is checked as it is read instead. `fresh`: just
    /// created, so there is nothing to check and no file to open.
    func openData(_ ino: InodeNumber, fresh: Bool = false) throws -> OpenInode {
        func verify() throws -> (VerifiedContent?, isInline: Bool) {
            let a = try metadata.attributes(ino)
            return (a.isInline ? nil : try dataStore.verifyContent(ino.fileID, size: a.size, digest: a.contentDigest), a.isInline)
        }
        let checked = fresh ? (nil, false) : table.handle(ino) == nil ? try verify() : nil
        // (Checked again under the lock only when the last handle closed in between.)
        let integrity = metadata.hasIntegrity
        return try table.open(ino) {
            let (verified, isInline) = try checked ?? verify()
            return try dataStore.open(ino.fileID, verified: verified, inline: integrity ? (metadata, isInline) : nil, fresh: fresh)
        }
    }

    func openInode(_ ino: InodeNumber) throws -> OpenInode {
        guard let inode = table.handle(ino) else { throw Errno.badFile }
        return inode
    }
}

extension FileSystem {
    /// Seconds between background writes of pending timestamps.
    public static let timestampFlushInterval = 5

    /// Starts the thread that commits the metadata's shared transactions
    /// (group commit) and writes pending timestamps periodically.
    public func startMetadataCommitter() {
        let metadata = self.metadata
        let thread = Thread {
            metadata.runCommitter(timestampInterval: Self.timestampFlushInterval) { FuseLog.error("committing metadata: \($0)") }
        }
        thread.name = "kmsfs-metadata-committer"
        thread.start()
        let flusher = Thread { [self] in
            while true {
                usleep(Self.deferredFlushInterval)
                try? flushHeldBackWrites(olderThan: UInt64(Self.deferredFlushInterval) * 1000)  // (each failure is logged)
            }
        }
        flusher.name = "kmsfs-deferred-writes"
        flusher.start()
    }

    /// How long a write held back for a copy-before-write batch may wait (µs):
    /// bounds what a daemon crash loses of writes nobody fsynced, as the
    /// kernel's own writeback does.
    static let deferredFlushInterval: UInt32 = 200_000

    /// 512-byte blocks the ciphertext occupies (holes are not counted).
    func allocatedBlocks(_ a: InodeAttributes) -> UInt64 {
        // An inline file's unit counts as one block: tools read st_blocks == 0 with a size as "all holes".
        if a.isInline { return a.size > 0 ? UInt64(DataStore.blockSize / 512) : 0 }
        return UInt64(max(0, dataStore.allocatedBytes(a.ino.fileID))) / 512
    }
}

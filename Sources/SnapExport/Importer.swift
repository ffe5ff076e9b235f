import BlockCipher
import Foundation
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// What an import or verify did.
public struct ImportSummary: Sendable {
    public var snapshot: String
    public var filesystemUUID: String
    public var files = 0
    public var chunks = 0
    public var bytes: UInt64 = 0
    public var metadataBytes: UInt64 = 0
    /// Orphaned inodes or stray data in the image that the import cleaned up.
    public var repaired: [String] = []
    /// Regular files whose data matched their sealed content digest (integrity on).
    public var verifiedFiles = 0
    public var seconds = 0.0
}

/// Reads bundles: verify, import (rehydrate) and rewrap.
public struct BundleReader {
    public let source: any BundleStore

    public init(source: any BundleStore) { self.source = source }

    /// The snapshot to use: `requested`, or the only one exported at the source.
    public func snapshotName(_ requested: String?) throws -> String {
        let available = try exportedSnapshots(at: source)
        if let requested {
            guard available.contains(requested) else {
                throw BundleError.missing("no export of snapshot '\(requested)' at \(source.location)" + (available.isEmpty ? "" : " (it has: \(available.joined(separator: ", ")))"))
            }
            return requested
        }
        guard !available.isEmpty else { throw BundleError.missing("no snapshot bundle at \(source.location) (no manifests/*.jsonl)") }
        guard available.count == 1 else {
            throw BundleError.usage("\(source.location) holds exports of several snapshots (\(available.joined(separator: ", "))); choose one with --snapshot")
        }
        return available[0]
    }

    /// The superblock in a manifest, checked against the manifest's filesystem UUID.
    static func superblock(of header: ManifestHeader) throws -> Superblock {
        let superblock: Superblock
        do { superblock = try Superblock.decodeSlot(header.superblock) } catch {
            throw BundleError.corrupt("the superblock in the manifest \(error)")
        }
        guard superblock.uuidString == header.filesystemUUID else {
            throw BundleError.mismatch("the manifest's superblock belongs to filesystem \(superblock.uuidString), not \(header.filesystemUUID): wrong wrapped key")
        }
        return superblock
    }

    /// Fetches one chunk and checks its length and SHA-256.
    func chunk(_ reference: ChunkReference) throws -> [UInt8] {
        let bytes = try source.get(BundleKeys.chunk(reference.hex), expectedSize: reference.length)
        guard bytes.count == reference.length else {
            throw BundleError.corrupt("chunk \(reference.hex) has \(bytes.count) bytes, the manifest says \(reference.length) (truncated?)")
        }
        guard SHA256.hash(bytes) == reference.sha256 else {
            throw BundleError.corrupt("chunk \(reference.hex) does not match its SHA-256 (modified or damaged)")
        }
        return bytes
    }

    /// Reads every chunk a snapshot's manifest names and checks it. No KMS needed.
    public func verify(snapshot requested: String?, progress enabled: Bool) throws -> ImportSummary {
        let name = try snapshotName(requested)
        let manifest = try fetchManifest(name, from: source)
        _ = try Self.superblock(of: manifest.header)
        var summary = ImportSummary(snapshot: name, filesystemUUID: manifest.header.filesystemUUID)
        let progress = Progress(verb: "verify \(name)", totalBytes: manifest.totals.bytes + manifest.totals.metadataBytes, enabled: enabled)
        var metadataEnd: UInt64 = 0
        try manifest.forEach { record in
            switch record {
            case .metadataChunk(let c):
                guard c.offset == metadataEnd else { throw BundleError.corrupt("metadata chunks are not contiguous") }
                metadataEnd += UInt64(c.length)
                _ = try chunk(c)
                summary.metadataBytes += UInt64(c.length)
                progress.advance(c.length, transferred: c.length)
            case .file:
                summary.files += 1
            case .chunk(let c):
                _ = try chunk(c)
                summary.chunks += 1
                summary.bytes += UInt64(c.length)
                progress.advance(c.length, transferred: c.length)
            case .end: break
            }
        }
        progress.finish()
        summary.seconds = progress.elapsed
        return summary
    }

    /// Rehydrates snapshot `requested` into a new filesystem at `target`.
    /// `unlock` unwraps the bundle's key through the KMS and checks the
    /// key-check value (it throws if the KMS cannot or will not). Everything
    /// is built in `staging` and renamed to `target` only when every chunk
    /// has been verified and the metadata checks out; on any error the
    /// staging directory is removed and nothing else exists.
    public func rehydrate(snapshot requested: String?, target: StorePaths, staging: String, progress enabled: Bool,
                          unlock: (Superblock) throws -> FilesystemKeys) throws -> ImportSummary {
        let name = try snapshotName(requested)
        guard access(target.root, F_OK) != 0 else { throw MetaStoreError.storeExists(path: target.root) }
        let manifest = try fetchManifest(name, from: source)
        let superblock = try Self.superblock(of: manifest.header)
        let keys = try unlock(superblock)
        try removeTree(staging)
        do {
            let summary = try build(manifest: manifest, superblock: superblock, keys: keys, staging: StorePaths(root: staging), progress: enabled)
            guard rename(staging, target.root) == 0 else { throw BundleError.io("cannot rename \(staging) to \(target.root): \(String(cString: strerror(errno)))") }
            try syncDirectory(containing: target.root)
            return summary
        } catch {
            try? removeTree(staging)
            throw error
        }
    }

    private func build(manifest: ManifestReader, superblock: Superblock, keys: FilesystemKeys, staging: StorePaths, progress enabled: Bool) throws -> ImportSummary {
        var summary = ImportSummary(snapshot: manifest.header.snapshotName, filesystemUUID: manifest.header.filesystemUUID)
        let dataStore = DataStore(directory: staging.data, cipher: keys.data, unitMAC: keys.integrity?.units)
        let received = try receive(manifest, into: staging, dataStore: dataStore, keepData: true, summary: &summary, progress: enabled)
        let metadata = try checkedMetadata(staging, header: manifest.header, keys: keys, dataStore: dataStore, received: received, summary: &summary)
        // Another filesystem from now on, though with the source's UUID and keys: its own instance.
        try metadata.renewInstance()
        // The copy keeps the source's key and file ids, so its existing blocks decrypt as they are.
        // Its new files must not take the ids the source will hand out next: the same key and
        // tweak for different plaintext would be tweak reuse across the two filesystems. So the
        // copy's inode numbers jump ahead by a random 2^32..2^40.
        try metadata.advanceInodeNumbers(by: UInt64.random(in: (1 << 32)..<(1 << 40)))
        try metadata.sync()
        try SuperblockFile.create(superblock, at: staging.superblock)
        try syncDirectory(containing: staging.superblock)
        return summary
    }

    /// Checks a snapshot bundle with its key (`snapshot verify --deep`): every
    /// chunk's hash, then, as an import would, the metadata image (every row
    /// and name authenticates) and every file's data against the content
    /// digest its sealed row holds. Only the metadata image is written, to
    /// `scratch`, which is removed after.
    public func verifyDeep(snapshot requested: String?, scratch: String, progress enabled: Bool,
                           unlock: (Superblock) throws -> FilesystemKeys) throws -> ImportSummary {
        let name = try snapshotName(requested)
        let manifest = try fetchManifest(name, from: source)
        let superblock = try Self.superblock(of: manifest.header)
        let keys = try unlock(superblock)
        try removeTree(scratch)
        defer { try? removeTree(scratch) }
        var summary = ImportSummary(snapshot: name, filesystemUUID: manifest.header.filesystemUUID)
        let staging = StorePaths(root: scratch)
        let dataStore = DataStore(directory: staging.data, cipher: keys.data, unitMAC: keys.integrity?.units)
        let received = try receive(manifest, into: staging, dataStore: dataStore, keepData: false, summary: &summary, progress: enabled)
        _ = try checkedMetadata(staging, header: manifest.header, keys: keys, dataStore: dataStore, received: received, summary: &summary)
        return summary
    }

    /// Fetches and checks every chunk; writes the metadata image to `staging`
    /// and, with `keepData`, each file's ciphertext and unit tags. Returns,
    /// by file id, each file's content digest (integrity on), computed from
    /// the chunks as they came, and where its last chunk ends.
    private func receive(_ manifest: ManifestReader, into staging: StorePaths, dataStore: DataStore, keepData: Bool,
                         summary: inout ImportSummary, progress enabled: Bool) throws -> ReceivedFiles {
        guard mkdir(staging.root, 0o700) == 0 else { throw BundleError.io("cannot create \(staging.root): \(String(cString: strerror(errno)))") }
        try DataStore.createLayout(at: staging.data)
        let progress = Progress(verb: "\(keepData ? "import" : "verify") \(summary.snapshot)", totalBytes: manifest.totals.bytes + manifest.totals.metadataBytes,
                                enabled: enabled)
        defer { progress.finish(); summary.seconds = progress.elapsed }
        let metaFD = open(staging.metadata, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard metaFD >= 0 else { throw BundleError.io("cannot create \(staging.metadata)") }
        defer { close(metaFD) }
        var metadataEnd: UInt64 = 0
        var received = ReceivedFiles()
        var current: (id: UInt64, fd: Int32, digester: ContentDigester?, end: UInt64)?
        func closeCurrent() throws {
            guard let c = current.take() else { return }
            received.ends[c.id] = c.end
            if c.fd >= 0 {
                defer { close(c.fd) }
                guard fsync(c.fd) == 0 else { throw BundleError.io("fsync of imported data failed: \(String(cString: strerror(errno)))") }
                // The chunks passed their SHA-256 against the manifest; the tags made of them are checked against the sealed rows after.
                received.digests[c.id] = try dataStore.tagAsItStands(FileID(c.id))
            } else if let digester = c.digester {
                received.digests[c.id] = digester.finalize()
            }
        }
        defer { if let c = current, c.fd >= 0 { close(c.fd) } }
        // Chunks are fetched (and checked against their SHA-256) ahead, on the
        // store's `uploadWidth` threads, and written in manifest order; at most
        // `4 × width` records wait, so memory stays a few dozen chunks.
        // At most 256 MiB of fetched chunks wait (large chunk sizes fetch fewer ahead).
        let width = min(source.uploadWidth, max(1, (256 << 20) / (4 * max(manifest.header.chunkSize, 1))))
        let fetchers = width > 1 ? BoundedWorkers(width: width) : nil
        defer { fetchers?.cancel() }
        var waiting: [(record: ManifestRecord, bytes: Future<[UInt8]>?)] = []
        let reader = UncheckedSendable(self)
        func fetched(_ c: ChunkReference, ahead: Future<[UInt8]>?) throws -> [UInt8] {
            try ahead?.wait() ?? chunk(c)
        }
        func process(_ record: ManifestRecord, ahead: Future<[UInt8]>?) throws {
            switch record {
            case .metadataChunk(let c):
                guard c.offset == metadataEnd else { throw BundleError.corrupt("metadata chunks are not contiguous") }
                let bytes = try fetched(c, ahead: ahead)
                try bytes.withUnsafeBytes { try writeFully(metaFD, $0, at: c.offset, path: staging.metadata) }
                metadataEnd += UInt64(c.length)
                summary.metadataBytes += UInt64(c.length)
                progress.advance(c.length, transferred: c.length)
            case .file(let id, _):
                try closeCurrent()
                if keepData {
                    let path = dataStore.path(for: FileID(id))
                    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                    guard fd >= 0 else { throw BundleError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
                    current = (id, fd, nil, 0)
                } else {
                    current = (id, -1, dataStore.unitMAC.map { ContentDigester(fileID: FileID(id), mac: $0) }, 0)
                }
                summary.files += 1
            case .chunk(let c):
                guard let file = current else { throw BundleError.corrupt("a chunk outside a file") }
                // Whole units, in order, never overlapping: what an export writes (import and deep verify alike).
                let unit = UInt64(DataStore.blockSize)
                guard c.offset % unit == 0, UInt64(c.length) % unit == 0, c.offset >= file.end else {
                    throw BundleError.corrupt("chunk \(c.hex) of file \(FileID(file.id)) is not whole units after the previous one")
                }
                current!.end = c.offset + UInt64(c.length)
                let bytes = try fetched(c, ahead: ahead)
                if file.fd >= 0 {
                    try bytes.withUnsafeBytes { try writeFully(file.fd, $0, at: c.offset, path: dataStore.path(for: FileID(file.id))) }
                } else if let digester = file.digester {
                    try bytes.withUnsafeBytes { try digester.add(ciphertext: $0, first: c.offset / unit) }
                }
                summary.chunks += 1
                summary.bytes += UInt64(c.length)
                progress.advance(c.length, transferred: c.length)
            case .end: break
            }
        }
        try manifest.forEach { record in
            try Interruption.check()
            var ahead: Future<[UInt8]>?
            if let fetchers {
                switch record {
                case .metadataChunk(let c), .chunk(let c):
                    let future = Future<[UInt8]>()
                    try fetchers.submit { future.fulfill(Result { try reader.value.chunk(c) }) }
                    ahead = future
                default: break
                }
            }
            waiting.append((record, ahead))
            while waiting.count > 4 * width {
                let next = waiting.removeFirst()
                try process(next.record, ahead: next.bytes)
            }
        }
        while !waiting.isEmpty {
            try Interruption.check()
            let next = waiting.removeFirst()
            try process(next.record, ahead: next.bytes)
        }
        try closeCurrent()
        guard fsync(metaFD) == 0 else { throw BundleError.io("fsync \(staging.metadata): \(String(cString: strerror(errno)))") }
        return received
    }

    /// What `receive` learnt of each file with chunks, by file id: its content
    /// digest (integrity on) and where its last chunk ends.
    struct ReceivedFiles {
        var digests: [UInt64: [UInt8]] = [:]
        var ends: [UInt64: UInt64] = [:]
    }

    /// Opens the received metadata image with the key and checks it: every
    /// name must decrypt (AES-SIV authenticates it), links and inodes must
    /// agree, and (integrity on) every row must authenticate and every
    /// regular file's data must give the content digest its sealed row holds.
    /// Leftovers of files that were open-but-unlinked at snapshot time are
    /// cleaned up, as a mount would.
    private func checkedMetadata(_ staging: StorePaths, header: ManifestHeader, keys: FilesystemKeys, dataStore: DataStore, received: ReceivedFiles,
                                 summary: inout ImportSummary) throws -> MetadataStore {
        let metadata: MetadataStore
        do { metadata = try MetadataStore(path: staging.metadata, names: keys.names, integrity: keys.integrity, create: false) } catch MetaStoreError.rowsReplaced {
            throw BundleError.corrupt("the metadata image's rows are not the ones its counters sealed (a row was replaced, added or removed)")
        }
        // The image must be the one sealed for the snapshot the manifest names (not another one of the filesystem, relabelled).
        do {
            try metadata.verifySnapshotSeal(id: header.snapshotID, name: header.snapshotName, created: header.created, limit: nil)
        } catch MetaStoreError.tampered(let what) {
            throw BundleError.corrupt("the metadata image is not the one sealed for this snapshot: \(what)")
        }
        let invalid = try metadata.invalidRows()
        guard invalid.isEmpty else {
            throw BundleError.corrupt("the metadata image holds rows kmsfs never writes: \(invalid.prefix(3).joined(separator: "; "))")
        }
        let report = try metadata.check(repair: false, data: dataStore)
        guard report.unrepairable.isEmpty else {
            // (A wrong key was refused by the key-check value before: this is damage or forgery.)
            throw BundleError.corrupt("the bundle's metadata is damaged or forged: \(report.unrepairable.prefix(3).joined(separator: "; "))")
        }
        if let mac = dataStore.unitMAC {
            for ino in try metadata.regularFiles() {
                let a = try metadata.attributes(ino)
                let end = received.ends[ino.fileID.rawValue]
                guard end == nil || (!a.isInline && end! <= (a.size + 4095) / 4096 * 4096) else {
                    throw BundleError.corrupt("the bundle has data of file \(ino) past its sealed size (or for an inline file): forged chunks")
                }
                guard let expected = a.contentDigest else {
                    throw BundleError.corrupt("file \(ino) has no sealed content digest (a snapshot taken by an older kmsfs, or a forged image)")
                }
                let actual: [UInt8]
                if a.isInline {  // its unit is in the image, not in a chunk
                    actual = try ContentDigester.inline(try metadata.inlineUnit(ino).unit, fileID: ino.fileID, mac: mac)
                } else {
                    actual = received.digests[ino.fileID.rawValue] ?? ContentDigester(fileID: ino.fileID, mac: mac).finalize()
                }
                guard MessageAuthenticator.equal(actual, expected) else {
                    throw BundleError.corrupt("the data of file \(ino) is not what its snapshot held (its unit tags do not give the sealed content digest): forged or damaged chunks")
                }
                summary.verifiedFiles += 1
            }
        }
        if !report.isClean { summary.repaired = try metadata.check(repair: true, data: dataStore).repairs }
        return metadata
    }

    /// Rewraps the key stored in every manifest at the source: `transform`
    /// returns the superblock with the new wrapped key. Chunks are untouched
    /// (they are encrypted with the filesystem key, which does not change).
    public func rewrap(transform: (Superblock) throws -> Superblock) throws -> [(snapshot: String, from: String, to: String)] {
        var changed: [(String, String, String)] = []
        for name in try exportedSnapshots(at: source) {
            let manifest = try fetchManifest(name, from: source)
            let old = try Self.superblock(of: manifest.header)
            let new = try transform(old)
            var header = manifest.header
            header.superblock = try new.encodeSlot()
            let temporary = manifest.path + ".rewrapped"  // in the manifest's private directory
            let writer = try ManifestWriter(path: temporary, header: header)
            try manifest.forEach { record in
                if case .end = record { return }
                try writer.add(record)
            }
            try writer.finish()
            try source.putFile(BundleKeys.manifest(name), path: temporary)
            changed.append((name, "\(old.kms.type) \(old.kms.keyIdentifier) \(old.kms.keyVersion)", "\(new.kms.type) \(new.kms.keyIdentifier) \(new.kms.keyVersion)"))
        }
        return changed
    }
}

import BlockCipher
import Foundation
import Locking
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// What an export did, for the summary line and --json.
public struct ExportSummary: Sendable {
    public var snapshot: String
    public var location: String
    public var files = 0
    public var chunks = 0
    /// Ciphertext bytes the snapshot's chunks cover (holes excluded).
    public var bytes: UInt64 = 0
    /// Chunks and bytes sent now, metadata chunks included; the rest were already at the destination.
    public var uploadedChunks = 0
    public var uploadedBytes: UInt64 = 0
    public var metadataBytes: UInt64 = 0
    /// Files whose chunk list came from the base export without reading them (unchanged since the base).
    public var reusedFiles = 0
    /// Ciphertext bytes read from the store to hash.
    public var readBytes: UInt64 = 0
    public var seconds = 0.0
}

/// Exports a snapshot: never decrypts and needs no KMS. Reads each file's
/// ciphertext as of the snapshot in chunks of `chunkSize` (memory: about
/// three chunk buffers, whatever the filesystem's size), names each chunk by
/// its SHA-256, and sends only chunks the destination does not hold yet, so
/// an export is incremental against earlier ones there and can be re-run
/// after an interruption. The manifest goes last: a bundle without it is not
/// importable.
public struct Exporter {
    public static let defaultChunkSize = 1 << 20
    public let store: StorePaths
    public let chunkSize: Int

    public init(store: StorePaths, chunkSize: Int = defaultChunkSize) {
        self.store = store
        self.chunkSize = chunkSize
    }

    public func export(snapshot info: SnapshotInfo, to destination: any BundleStore, base: String?, progress enabled: Bool) throws -> ExportSummary {
        var summary = ExportSummary(snapshot: info.name, location: destination.location)
        let paths = SnapshotPaths(storeRoot: store.root)
        // Held like a mounted view's: a snapshot delete must not merge deltas under this reader.
        let inUse = try FileLock.shared(info, paths: paths)
        defer { withExtendedLifetime(inUse) {} }
        let superblock = try SuperblockFile.read(store.superblock)
        var reuse: BaseReuse?  // holds the base manifest (and its private directory) until the export ends
        if let base {
            let manifest = try fetchManifest(base, from: destination)
            guard manifest.header.filesystemUUID == superblock.uuidString else {
                throw BundleError.mismatch("the base export '\(base)' at \(destination.location) is of filesystem \(manifest.header.filesystemUUID), not \(superblock.uuidString)")
            }
            reuse = try BaseReuse(manifest: manifest, snapshot: info, paths: paths, chunkSize: chunkSize)
        }
        let header = ManifestHeader(filesystemUUID: superblock.uuidString, snapshotID: info.id, snapshotName: info.name, created: info.created,
                                    chunkSize: chunkSize, superblock: try superblock.encodeSlot(), base: base)
        let scratch = try ScratchDirectory()
        let temporary = scratch.file("manifest.jsonl")
        let writer = try ManifestWriter(path: temporary, header: header)
        let image = paths.metadata(info)
        let totals = try MetadataStore.regularFileTotals(inImage: image)
        let imageSize = Int(fileSize(atPath: image))
        let progress = Progress(verb: "export \(info.name)", totalBytes: totals.bytes + UInt64(imageSize), enabled: enabled)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: DataStore.blockSize)
        defer { buffer.deallocate() }
        // Chunks are read and hashed here, in manifest order; their HEAD and PUT run on
        // `uploadWidth` threads. Counted as they land.
        // About four chunks per thread are in memory (queued, uploading, the request's copy): at most 256 MiB.
        let width = min(destination.uploadWidth, max(1, (256 << 20) / (4 * chunkSize)))
        let uploads = width > 1 ? BoundedWorkers(width: width) : nil
        defer { uploads?.cancel() }
        let landed = Locked((chunks: 0, bytes: UInt64(0)))
        let shared = UncheckedSendable(destination)

        /// Bytes the upload threads sent since the last call, for the progress line.
        var shown: UInt64 = 0
        func newlyLanded() -> Int {
            let total = landed.withLock { $0.bytes }
            defer { shown = total }
            return Int(total - shown)
        }

        /// Sends `bytes` unless the destination holds that chunk already; returns
        /// its reference, and whether it was sent (always false when uploading in parallel: see `landed`).
        func send(_ bytes: UnsafeMutableRawBufferPointer) throws -> (ChunkReference, Bool) {
            let digest = SHA256.hash(UnsafeRawBufferPointer(bytes))
            let key = BundleKeys.chunk(digest.hexString)
            let reference = ChunkReference(offset: 0, length: bytes.count, sha256: digest)
            guard let uploads else {
                guard try !destination.exists(key, size: bytes.count) else { return (reference, false) }
                try destination.put(key, bytes: UnsafeRawBufferPointer(bytes), sha256: digest)
                return (reference, true)
            }
            let copy = Array(bytes)
            try uploads.submit {
                guard try !shared.value.exists(key, size: copy.count) else { return }
                try shared.value.put(key, owned: copy, sha256: digest)
                landed.withLock { $0.chunks += 1; $0.bytes += UInt64(copy.count) }
            }
            return (reference, false)
        }

        // The metadata image, chunked like file data.
        let imageFD = open(image, O_RDONLY | O_CLOEXEC)
        guard imageFD >= 0 else { throw BundleError.io("cannot open \(image): \(String(cString: strerror(errno)))") }
        defer { close(imageFD) }
        var offset = 0
        while offset < imageSize {
            let length = min(chunkSize, imageSize - offset)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
            guard pread(imageFD, slice.baseAddress, length, off_t(offset)) == length else { throw BundleError.io("reading \(image) failed") }
            var (reference, sent) = try send(slice)
            reference.offset = UInt64(offset)
            try writer.add(.metadataChunk(reference))
            progress.advance(length, transferred: sent ? length : newlyLanded())
            summary.metadataBytes += UInt64(length)
            if sent {
                summary.uploadedChunks += 1
                summary.uploadedBytes += UInt64(length)
            }
            offset += length
        }

        // File data as of the snapshot; all-zero chunks are holes and not stored.
        let overlay = SnapshotOverlay(storeRoot: store.root, snapshot: info)
        try MetadataStore.forEachRegularFile(inImage: image) { id, size in
            try writer.add(.file(id: id, size: size))
            summary.files += 1
            let reused = try reuse?.copyChunks(of: id, size: size, into: writer) { c in
                // Present at the destination, as the base export left it? Else read and send just that chunk.
                guard try !destination.exists(BundleKeys.chunk(c.hex), size: c.length) else { return }
                let live = try overlay.openLive(id)
                defer { if live >= 0 { close(live) } }
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<c.length])
                try overlay.read(id, liveFD: live, first: c.offset / UInt64(DataStore.blockSize), into: slice)
                summary.readBytes += UInt64(c.length)
                guard SHA256.hash(UnsafeRawBufferPointer(slice)) == c.sha256 else {
                    throw BundleError.mismatch("file \(id) at offset \(c.offset) differs from the base export although it is recorded as unchanged; export without --base")
                }
                try destination.put(BundleKeys.chunk(c.hex), bytes: UnsafeRawBufferPointer(slice), sha256: c.sha256)
                summary.uploadedChunks += 1
                summary.uploadedBytes += UInt64(c.length)
            }
            if let reused {
                summary.reusedFiles += 1
                summary.chunks += reused.chunks
                summary.bytes += reused.bytes
                progress.advance(Int((size + 4095) / 4096 * 4096), chunk: false)
                return
            }
            let live = try overlay.openLive(id)
            defer { if live >= 0 { close(live) } }
            let unit = UInt64(DataStore.blockSize)
            let end = (size + unit - 1) / unit * unit
            var position: UInt64 = 0
            while position < end {
                let length = Int(min(UInt64(chunkSize), end - position))
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
                try overlay.read(id, liveFD: live, first: position / unit, into: slice)
                summary.readBytes += UInt64(length)
                if !slice.allSatisfy({ $0 == 0 }) {
                    var (reference, sent) = try send(slice)
                    reference.offset = position
                    try writer.add(.chunk(reference))
                    summary.chunks += 1
                    summary.bytes += UInt64(length)
                    if sent {
                        summary.uploadedChunks += 1
                        summary.uploadedBytes += UInt64(length)
                    }
                    progress.advance(length, transferred: sent ? length : newlyLanded())
                } else {
                    progress.advance(length, chunk: false)
                }
                position += UInt64(length)
            }
        }
        // Every chunk landed before the manifest that names them.
        try uploads?.finish()
        let parallel = landed.withLock { $0 }
        summary.uploadedChunks += parallel.chunks
        summary.uploadedBytes += parallel.bytes
        try writer.finish()
        try destination.putFile(BundleKeys.manifest(info.name), path: temporary)
        progress.finish()
        summary.seconds = progress.elapsed
        return summary
    }
}

/// Incremental export without reading unchanged files: a file that has no
/// copy-before-write record (delta or whole copy) in the base snapshot or any
/// snapshot between it and the exported one did not change in between, so its
/// chunks are the base export's, copied from the base manifest (streamed in
/// step, both are in file id order). Used only when the base snapshot still
/// exists here, was exported with the same chunk size, and the sizes agree.
struct BaseReuse {
    let cursor: ManifestCursor
    let limit: UInt64
    let changed: Set<UInt64>
    private var lookahead: ManifestRecord?

    init?(manifest: ManifestReader, snapshot: SnapshotInfo, paths: SnapshotPaths, chunkSize: Int) throws {
        let catalog = try SnapshotCatalog.load(paths)
        guard let base = catalog.named(manifest.header.snapshotName), !base.deleting,
              base.id == manifest.header.snapshotID, base.created == manifest.header.created,  // (an id taken again, after an edited catalog, is not the base)
              base.id < snapshot.id, manifest.header.chunkSize == chunkSize else { return nil }
        var changed = Set<UInt64>()
        for s in catalog.snapshots where s.id >= base.id && s.id < snapshot.id {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: paths.deltaDirectory(s))) ?? [] {
                if let id = UInt64(name.prefix(16), radix: 16) { changed.insert(id) }
            }
        }
        self.changed = changed
        limit = base.fileIDLimit
        cursor = try ManifestCursor(manifest, checkingHash: false)
    }

    /// Writes the base export's chunk records of file `id` and returns their
    /// count and bytes, or nil when the file must be read.
    /// `ensure` is called for each chunk (to re-send one the destination lost).
    mutating func copyChunks(of id: UInt64, size: UInt64, into writer: ManifestWriter,
                             ensure: (ChunkReference) throws -> Void) throws -> (chunks: Int, bytes: UInt64)? {
        guard id < limit, !changed.contains(id) else { return nil }
        while true {
            guard let record = try lookahead ?? cursor.next() else { return nil }
            lookahead = nil
            switch record {
            case .file(let baseID, let baseSize) where baseID >= id:
                guard baseID == id, baseSize == size else {
                    lookahead = record
                    return nil
                }
                var result = (chunks: 0, bytes: UInt64(0))
                while let next = try cursor.next() {
                    guard case .chunk(let c) = next else {
                        lookahead = next
                        break
                    }
                    try ensure(c)
                    try writer.add(.chunk(c))
                    result.chunks += 1
                    result.bytes += UInt64(c.length)
                }
                return result
            case .end:
                lookahead = record
                return nil
            default:
                continue
            }
        }
    }
}

/// Downloads the manifest of `snapshot` from `source` into a private
/// temporary directory (removed with the reader) and checks it whole.
func fetchManifest(_ snapshot: String, from source: any BundleStore) throws -> ManifestReader {
    guard ComponentName.isValid(snapshot) else { throw BundleError.usage("invalid snapshot name '\(snapshot)': \(ComponentName.rule)") }
    let scratch = try ScratchDirectory()
    let temporary = scratch.file("manifest.jsonl")
    do { try source.getFile(BundleKeys.manifest(snapshot), path: temporary) } catch BundleError.missing {
        throw BundleError.missing("no export of snapshot '\(snapshot)' at \(source.location) (its manifest \(BundleKeys.manifest(snapshot)) is missing)")
    }
    let reader = try ManifestReader(path: temporary)
    reader.scratch = scratch
    try reader.verify()
    return reader
}

/// The snapshot names with a manifest at `source`. A listing is outside
/// input: a key whose name is not a valid snapshot name (`../x`, a slash,
/// control bytes) is not a snapshot, whatever the store returned.
public func exportedSnapshots(at source: any BundleStore) throws -> [String] {
    try source.list(prefix: BundleKeys.manifestPrefix).compactMap { key in
        guard key.hasSuffix(BundleKeys.manifestSuffix) else { return nil }
        let name = String(key.dropFirst(BundleKeys.manifestPrefix.count).dropLast(BundleKeys.manifestSuffix.count))
        return ComponentName.isValid(name) ? name : nil
    }
}


import BlockCipher
import Foundation
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
        guard mkdir(staging.root, 0o700) == 0 else { throw BundleError.io("cannot create \(staging.root): \(String(cString: strerror(errno)))") }
        try DataStore.createLayout(at: staging.data)
        let progress = Progress(verb: "import \(summary.snapshot)", totalBytes: manifest.totals.bytes + manifest.totals.metadataBytes, enabled: enabled)
        let dataStore = DataStore(directory: staging.data, cipher: keys.data, unitMAC: keys.integrity?.units)
        let metaFD = open(staging.metadata, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard metaFD >= 0 else { throw BundleError.io("cannot create \(staging.metadata)") }
        defer { close(metaFD) }
        var metadataEnd: UInt64 = 0
        var current: (id: UInt64, fd: Int32)?
        func closeCurrent() throws {
            guard let c = current else { return }
            current = nil
            defer { close(c.fd) }
            guard fsync(c.fd) == 0 else { throw BundleError.io("fsync of imported data failed: \(String(cString: strerror(errno)))") }
            // Bundles carry no unit tags yet: the chunks just passed their SHA-256 against the manifest.
            try dataStore.tagAsItStands(FileID(c.id))
        }
        defer { if let c = current { close(c.fd) } }
        try manifest.forEach { record in
            try Interruption.check()
            switch record {
            case .metadataChunk(let c):
                guard c.offset == metadataEnd else { throw BundleError.corrupt("metadata chunks are not contiguous") }
                let bytes = try chunk(c)
                try bytes.withUnsafeBytes { try writeFully(metaFD, $0, at: c.offset, path: staging.metadata) }
                metadataEnd += UInt64(c.length)
                summary.metadataBytes += UInt64(c.length)
                progress.advance(c.length, transferred: c.length)
            case .file(let id, _):
                try closeCurrent()
                let path = dataStore.path(for: FileID(id))
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw BundleError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
                current = (id, fd)
                summary.files += 1
            case .chunk(let c):
                guard let file = current else { throw BundleError.corrupt("a chunk outside a file") }
                let bytes = try chunk(c)
                try bytes.withUnsafeBytes { try writeFully(file.fd, $0, at: c.offset, path: dataStore.path(for: FileID(file.id))) }
                summary.chunks += 1
                summary.bytes += UInt64(c.length)
                progress.advance(c.length, transferred: c.length)
            case .end: break
            }
        }
        try closeCurrent()
        guard fsync(metaFD) == 0 else { throw BundleError.io("fsync \(staging.metadata): \(String(cString: strerror(errno)))") }
        progress.finish()
        // The metadata must open with this key: every name must decrypt (AES-SIV
        // authenticates it), links and inodes must agree. Leftovers of files that
        // were open-but-unlinked at snapshot time are cleaned up, as a mount would.
        let metadata = try MetadataStore(path: staging.metadata, names: keys.names, integrity: keys.integrity, create: false)
        let invalid = try metadata.invalidRows()
        guard invalid.isEmpty else {
            throw BundleError.corrupt("the metadata image holds rows kmsfs never writes: \(invalid.prefix(3).joined(separator: "; "))")
        }
        let report = try metadata.check(repair: false, data: dataStore)
        guard report.unrepairable.isEmpty else {
            throw BundleError.mismatch("the bundle's metadata does not open with the unwrapped key or is damaged: \(report.unrepairable.prefix(3).joined(separator: "; "))")
        }
        if !report.isClean { summary.repaired = try metadata.check(repair: true, data: dataStore).repairs }
        // The tag files were made anew from the chunks: the source's digests do not describe them.
        try metadata.clearTagDigests()
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
        summary.seconds = progress.elapsed
        return summary
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

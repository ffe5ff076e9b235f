import BlockCipher
import Foundation
import MetaStore

/// A snapshot bundle's manifest (docs/FORMAT.md "Snapshot bundles"): JSON
/// Lines, so it is written and read as a stream (memory does not grow with the
/// filesystem). The last line carries the SHA-256 of every byte before it, so
/// a truncated or edited manifest is refused.
///
///     {"format":"kmsfs-snapshot","version":1,"filesystem":..., "snapshot":{...}, "chunkSize":..., "superblock":...}
///     {"m":[offset,length,"sha256"]}          metadata image chunks, in order
///     {"f":"<file id, 16 hex>","size":N}       a regular file; its chunks follow
///     {"c":[offset,length,"sha256"]}          a ciphertext chunk of that file
///     {"end":{"files":F,"chunks":C,"bytes":B,"metadataBytes":M},"sha256":"..."}
public struct ManifestHeader: Sendable, Equatable {
    public static let format = "kmsfs-snapshot"
    public static let version = 1
    public var filesystemUUID: String
    public var snapshotID: UInt32
    public var snapshotName: String
    public var created: UInt64
    public var chunkSize: Int
    /// One superblock slot (docs/FORMAT.md "Superblock"): the wrapped key, never the key.
    public var superblock: [UInt8]
    /// The snapshot this export was made against (`--base`), for information.
    public var base: String?

    public init(filesystemUUID: String, snapshotID: UInt32, snapshotName: String, created: UInt64, chunkSize: Int, superblock: [UInt8], base: String?) {
        self.filesystemUUID = filesystemUUID
        self.snapshotID = snapshotID
        self.snapshotName = snapshotName
        self.created = created
        self.chunkSize = chunkSize
        self.superblock = superblock
        self.base = base
    }
}

/// A chunk reference: where its bytes go and their SHA-256.
public struct ChunkReference: Sendable, Equatable {
    public var offset: UInt64
    public var length: Int
    public var sha256: [UInt8]
    public var hex: String { sha256.hexString }
}

/// One manifest line after the header.
public enum ManifestRecord: Sendable, Equatable {
    case metadataChunk(ChunkReference)
    case file(id: UInt64, size: UInt64)
    case chunk(ChunkReference)
    case end(ManifestTotals)
}

public struct ManifestTotals: Sendable, Equatable {
    public var files = 0
    public var chunks = 0
    /// Ciphertext bytes of file chunks.
    public var bytes: UInt64 = 0
    public var metadataBytes: UInt64 = 0
    public init() {}
}

/// Writes a manifest to a local file, line by line.
final class ManifestWriter {
    let path: String
    private let handle: FileHandle
    private let hash = SHA256Stream()
    private(set) var totals = ManifestTotals()

    init(path: String, header: ManifestHeader) throws {
        self.path = path
        self.handle = FileHandle(fileDescriptor: try createExclusive(path), closeOnDealloc: true)
        var object: [String: Any] = [
            "format": ManifestHeader.format, "version": ManifestHeader.version, "filesystem": header.filesystemUUID,
            "snapshot": ["id": Int(header.snapshotID), "name": header.snapshotName, "created": Int(header.created)],
            "chunkSize": header.chunkSize, "superblock": Data(header.superblock).base64EncodedString(),
        ]
        if let base = header.base { object["base"] = base }
        try line(object)
    }

    func add(_ record: ManifestRecord) throws {
        switch record {
        case .metadataChunk(let c):
            totals.metadataBytes += UInt64(c.length)
            try line(["m": [Int(c.offset), c.length, c.hex]])
        case .file(let id, let size):
            totals.files += 1
            try line(["f": String(format16Hex: id), "size": Int(size)])
        case .chunk(let c):
            totals.chunks += 1
            totals.bytes += UInt64(c.length)
            try line(["c": [Int(c.offset), c.length, c.hex]])
        case .end:
            preconditionFailure("finish() writes the end line")
        }
    }

    /// Writes the end line and closes the file.
    func finish() throws {
        let digest = hash.finalize()
        let end: [String: Any] = [
            "end": ["files": totals.files, "chunks": totals.chunks, "bytes": Int(totals.bytes), "metadataBytes": Int(totals.metadataBytes)],
            "sha256": digest.hexString,
        ]
        try write(Array(try JSONSerialization.data(withJSONObject: end, options: [.sortedKeys])) + [0x0a])
        try handle.synchronize()
        try handle.close()
    }

    private func line(_ object: [String: Any]) throws {
        let bytes = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) + [0x0a]
        hash.update(bytes)
        try write(bytes)
    }

    private func write(_ bytes: [UInt8]) throws {
        do { try handle.write(contentsOf: bytes) } catch { throw BundleError.io("writing \(path): \(error.localizedDescription)") }
    }
}

/// Reads a manifest from a local file. `verify()` reads it through once and
/// checks the hash line and the structure; `records` then streams it.
public final class ManifestReader {
    public let path: String
    /// The private directory a fetched manifest lives in, removed with the reader.
    var scratch: ScratchDirectory?
    public let header: ManifestHeader
    public private(set) var totals = ManifestTotals()
    static let maxLine = 1 << 20

    public init(path: String) throws {
        self.path = path
        var lines = try LineReader(path: path)
        guard let first = try lines.next() else { throw BundleError.corrupt("the manifest is empty") }
        header = try Self.parseHeader(first)
    }

    static func parseHeader(_ line: [UInt8]) throws -> ManifestHeader {
        guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { throw BundleError.corrupt("the manifest header is not JSON") }
        guard o["format"] as? String == ManifestHeader.format else { throw BundleError.corrupt("not a kmsfs snapshot manifest") }
        guard let version = o["version"] as? Int, version == ManifestHeader.version else {
            throw BundleError.unsupported("manifest version \(o["version"] ?? "?") (this kmsfs reads version \(ManifestHeader.version))")
        }
        guard let uuid = o["filesystem"] as? String, let snapshot = o["snapshot"] as? [String: Any],
              let id = snapshot["id"] as? Int, let name = snapshot["name"] as? String, let created = snapshot["created"] as? Int,
              let chunkSize = o["chunkSize"] as? Int, chunkSize >= 4096, chunkSize % 4096 == 0, chunkSize <= 1 << 28,
              let sb = (o["superblock"] as? String).flatMap({ Data(base64Encoded: $0) }), id >= 0, id <= Int(UInt32.max), created >= 0 else {
            throw BundleError.corrupt("the manifest header is missing or has invalid fields")
        }
        return ManifestHeader(filesystemUUID: uuid, snapshotID: UInt32(id), snapshotName: name, created: UInt64(created),
                              chunkSize: chunkSize, superblock: Array(sb), base: o["base"] as? String)
    }

    /// Reads the whole manifest once: every line must parse, chunks must
    /// follow a file and fit the chunk size, and the last line's hash and
    /// totals must match. Returns the totals.
    @discardableResult
    public func verify() throws -> ManifestTotals {
        try checkHash()
        var counted = ManifestTotals()
        var sawEnd = false
        try forEach(checkingHash: true) { record in
            switch record {
            case .metadataChunk(let c): counted.metadataBytes += UInt64(c.length)
            case .file: counted.files += 1
            case .chunk(let c):
                counted.chunks += 1
                counted.bytes += UInt64(c.length)
            case .end(let stated):
                guard stated == counted else { throw BundleError.corrupt("the manifest's totals do not match its records") }
                sawEnd = true
            }
        }
        guard sawEnd else { throw BundleError.corrupt("the manifest is truncated (no end line)") }
        totals = counted
        return counted
    }

    /// First pass: the SHA-256 of every line but the last must be the one the
    /// last line states, so an edit is reported as such, before any parsing.
    func checkHash() throws {
        var lines = try LineReader(path: path)
        let hash = SHA256Stream()
        var previous: [UInt8]?
        while let line = try lines.next() {
            if let previous { hash.update(previous + [0x0a]) }
            previous = line
        }
        guard let last = previous, let end = try? JSONSerialization.jsonObject(with: Data(last)) as? [String: Any], end["end"] != nil,
              let digest = end["sha256"] as? String else {
            throw BundleError.corrupt("the manifest is truncated (no end line)")
        }
        guard hash.finalize().hexString == digest else {
            throw BundleError.corrupt("the manifest was modified (its SHA-256 does not match its end line)")
        }
    }

    /// Streams the records after the header (the end line last).
    public func forEach(checkingHash: Bool = false, _ body: (ManifestRecord) throws -> Void) throws {
        let cursor = try ManifestCursor(self, checkingHash: checkingHash)
        while let record = try cursor.next() { try body(record) }
    }

    static func chunk(_ value: Any, chunkSize: Int) -> ChunkReference? {
        guard let a = value as? [Any], a.count == 3, let offset = a[0] as? Int, let length = a[1] as? Int, let hex = a[2] as? String,
              offset >= 0, offset <= 1 << 60, offset % 4096 == 0, length > 0, length <= chunkSize,
              hex.count == 64, let digest = [UInt8](hexString: hex) else { return nil }
        return ChunkReference(offset: UInt64(offset), length: length, sha256: digest)
    }
}

/// Reads a manifest's records one at a time (pull), checking order and
/// structure as it goes; the end record comes last, then nil.
final class ManifestCursor {
    private let reader: ManifestReader
    private let checkingHash: Bool
    private var lines: LineReader
    private let hash = SHA256Stream()
    private var inFile = false
    private var lastOffset: UInt64?
    private var lastFile: UInt64?
    private var fileEnd: UInt64 = 0
    private var number = 1
    private var finished = false

    init(_ reader: ManifestReader, checkingHash: Bool) throws {
        self.reader = reader
        self.checkingHash = checkingHash
        lines = try LineReader(path: reader.path)
        guard let first = try lines.next() else { throw BundleError.corrupt("the manifest is empty") }
        hash.update(first + [0x0a])
    }

    func next() throws -> ManifestRecord? {
        guard !finished else { return nil }
        guard let line = try lines.next() else { throw BundleError.corrupt("the manifest is truncated (no end line)") }
        number += 1
        guard let o = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
            throw BundleError.corrupt("manifest line \(number) is not JSON")
        }
        if let end = o["end"] as? [String: Any] {
            guard let files = end["files"] as? Int, let chunks = end["chunks"] as? Int, let bytes = end["bytes"] as? Int,
                  let meta = end["metadataBytes"] as? Int, let digest = o["sha256"] as? String, files >= 0, chunks >= 0, bytes >= 0, meta >= 0 else {
                throw BundleError.corrupt("manifest line \(number): bad end line")
            }
            if checkingHash && hash.finalize().hexString != digest {
                throw BundleError.corrupt("the manifest was modified (its SHA-256 does not match its end line)")
            }
            guard try lines.next() == nil else { throw BundleError.corrupt("manifest line \(number + 1): data after the end line") }
            finished = true
            var totals = ManifestTotals()
            totals.files = files
            totals.chunks = chunks
            totals.bytes = UInt64(bytes)
            totals.metadataBytes = UInt64(meta)
            return .end(totals)
        }
        if checkingHash { hash.update(line + [0x0a]) }
        let chunkSize = reader.header.chunkSize
        if let m = o["m"] {
            guard !inFile, let c = ManifestReader.chunk(m, chunkSize: chunkSize) else { throw BundleError.corrupt("manifest line \(number): bad metadata chunk") }
            return .metadataChunk(c)
        } else if let f = o["f"] as? String {
            guard f.count == 16, let id = UInt64(f, radix: 16), let size = o["size"] as? Int, size >= 0, lastFile.map({ id > $0 }) ?? true else {
                throw BundleError.corrupt("manifest line \(number): bad file record")
            }
            inFile = true
            lastFile = id
            lastOffset = nil
            fileEnd = (UInt64(size) + 4095) / 4096 * 4096
            return .file(id: id, size: UInt64(size))
        } else if let cv = o["c"] {
            guard inFile, let c = ManifestReader.chunk(cv, chunkSize: chunkSize), lastOffset.map({ c.offset > $0 }) ?? true,
                  c.offset + UInt64(c.length) <= fileEnd else {
                throw BundleError.corrupt("manifest line \(number): bad chunk record")
            }
            lastOffset = c.offset
            return .chunk(c)
        }
        throw BundleError.corrupt("manifest line \(number): unknown record")
    }
}

/// Reads a file line by line without holding it in memory.
struct LineReader {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var start = 0
    private var eof = false

    init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw BundleError.io("cannot open \(path)") }
        self.handle = handle
    }

    /// The next line without its newline; nil at the end.
    mutating func next() throws -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0a) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            if eof {
                guard start < buffer.count else { return nil }
                throw BundleError.corrupt("the manifest does not end with a newline (truncated?)")
            }
            guard buffer.count - start <= ManifestReader.maxLine else { throw BundleError.corrupt("a manifest line is longer than 1 MiB") }
            buffer.removeFirst(start)
            start = 0
            let more = (try? handle.read(upToCount: 1 << 16)) ?? nil
            if let more, !more.isEmpty { buffer += more } else { eof = true }
        }
    }
}

/// SHA-256 over a stream of byte arrays, finished once.
final class SHA256Stream {
    private var state: SHA256? = SHA256()
    func update(_ bytes: [UInt8]) { state!.update(bytes) }
    func finalize() -> [UInt8] { state.take()!.finalize() }
}

/// Errors of bundles and object stores, each a one-line message.
public enum BundleError: Error, Equatable, Sendable, CustomStringConvertible {
    case corrupt(String)
    case unsupported(String)
    case missing(String)
    case io(String)
    case store(String)
    case mismatch(String)
    case usage(String)
    case interrupted

    public var description: String {
        switch self {
        case .corrupt(let m): return "damaged bundle: \(m)"
        case .unsupported(let m): return "unsupported bundle: \(m)"
        case .missing(let m): return "incomplete bundle: \(m)"
        case .io(let m), .store(let m), .mismatch(let m), .usage(let m): return m
        case .interrupted: return "interrupted; nothing was kept"
        }
    }
}

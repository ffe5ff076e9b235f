import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// A 128-bit unit tag. Compared with XOR and OR over both words, so a
/// comparison takes the same time however much of a forgery matches.
struct UnitTag: Sendable {
    var low: UInt64
    var high: UInt64
    static let empty = UnitTag(low: 0, high: 0)
    var isEmpty: Bool { low | high == 0 }
    func matches(_ other: UnitTag) -> Bool { (low ^ other.low) | (high ^ other.high) == 0 }
    /// Whether this is a hole's tag: the top bit of byte 15 is 1 for a hole's
    /// tag and 0 for a data unit's, so a content digest can skip holes
    /// without computing their tags (each kind keeps a 127-bit MAC).
    var isHoleTag: Bool { UInt64(littleEndian: high) & Self.holeBit != 0 }
    static let holeBit: UInt64 = 1 << 63
}

/// The tags of one file's units (docs/FORMAT.md "Unit tags"):
/// HMAC-SHA-256 over le64(domain), le64(file id), le64(unit index) and, for
/// a data unit, its ciphertext, truncated to 128 bits, with the hole bit set
/// for a hole's tag and clear for a data unit's.
struct UnitTagger: Sendable {
    let fileID: FileID
    let mac: MessageAuthenticator

    /// A data unit's tag (domain "d").
    func tag(unit: UInt64, ciphertext: UnsafeRawBufferPointer) throws -> UnitTag {
        var t = try compute(domain: 0x64, unit: unit, ciphertext)
        t.high &= ~UnitTag.holeBit.littleEndian
        return t
    }

    /// The tag a unit made a hole on purpose carries (domain "h", no ciphertext).
    func holeTag(unit: UInt64) throws -> UnitTag {
        var t = try compute(domain: 0x68, unit: unit, nil)
        t.high |= UnitTag.holeBit.littleEndian
        return t
    }

    /// The tag of what a unit holds: its hole tag when it is all zeros.
    func held(unit: UInt64, _ bytes: UnsafeRawBufferPointer) throws -> UnitTag {
        DataFile.isZero(bytes) ? try holeTag(unit: unit) : try tag(unit: unit, ciphertext: bytes)
    }

    private func compute(domain: UInt64, unit: UInt64, _ ciphertext: UnsafeRawBufferPointer?) throws -> UnitTag {
        var header = (domain.littleEndian, fileID.rawValue.littleEndian, unit.littleEndian)
        var out = UnitTag.empty
        try withUnsafeBytes(of: &header) { h in
            try withUnsafeMutableBytes(of: &out) { try mac.authenticate(h, ciphertext, into: $0) }
        }
        return out
    }
}

/// The tags of one data file (docs/FORMAT.md "Unit tags"), in `<data file>.tags`:
/// record `u` at offset 32·u holds two 16-byte slots, the previous tag and
/// the current one. A unit verifies when its tag is in either slot, so a
/// crash between writing a record and writing its unit leaves the old and
/// the new content readable, never an EIO. `settle` empties the previous
/// slot once the data file is durable, so an old copy of a unit stops
/// verifying. A never-written unit has no record (or an empty one) and is a
/// hole; a unit made a hole on purpose (punch, truncate) gets the unit's
/// hole tag, so zeroing a written unit is detected.
///
/// Not synchronised: the DataFile's caller holds the inode lock.
final class UnitTags: @unchecked Sendable {
    // @unchecked: see above.
    static let recordSize = 32
    /// A file with more units than this waiting to settle (1 GiB written
    /// since its last fsync) is synced and settled inline: bounds memory (about 10 MiB).
    static let pendingLimit = 1 << 18
    let path: String
    let tagger: UnitTagger
    var fileID: FileID { tagger.fileID }
    /// -1 until the first record is written (a file that was never written has no tag file).
    private var fd: Int32
    /// Units whose record still holds a previous tag, with the current one.
    private(set) var pending: [UInt64: UnitTag] = [:]

    /// - Parameter openNow: false when the caller knows there is no tag file yet (created at the first record).
    init(dataPath: String, fileID: FileID, mac: MessageAuthenticator, openNow: Bool = true) throws {
        path = dataPath + ".tags"
        tagger = UnitTagger(fileID: fileID, mac: mac)
        fd = openNow ? open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW) : -1
        guard fd >= 0 || !openNow || errno == ENOENT else { throw MetaStoreError.io(operation: "open", path: path, errno: errno) }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Bytes in the tag file (0 when there is none).
    var length: UInt64 { fd >= 0 ? fileSize(fd) : 0 }

    // MARK: tags

    func tag(unit: UInt64, ciphertext: UnsafeRawBufferPointer) throws -> UnitTag { try tagger.tag(unit: unit, ciphertext: ciphertext) }
    func holeTag(unit: UInt64) throws -> UnitTag { try tagger.holeTag(unit: unit) }

    // MARK: records

    /// Records of units `first..<first+count` (empty past the end of the tag file).
    func records(first: UInt64, count: Int) throws -> [(UnitTag, UnitTag)] {
        var out = [(UnitTag, UnitTag)](repeating: (.empty, .empty), count: count)
        guard fd >= 0, count > 0 else { return out }
        try out.withUnsafeMutableBytes { _ = try readFully(fd, into: $0, at: first * UInt64(Self.recordSize), path: path) }
        return out
    }

    private func write(_ records: [(UnitTag, UnitTag)], first: UInt64) throws {
        if fd < 0 {
            fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else { throw MetaStoreError.io(operation: "open", path: path, errno: errno) }
        }
        if let injected = FaultInjection.failure(.write) { throw MetaStoreError.io(operation: "write", path: path, errno: injected) }
        try records.withUnsafeBytes { try writeFully(fd, $0, at: first * UInt64(Self.recordSize), path: path) }
    }

    /// Checks the ciphertext of units `first...` in `buffer` (holes as zero
    /// units) against their records; throws `.tampered` naming the first unit that fails.
    func verify(_ buffer: UnsafeRawBufferPointer, first: UInt64) throws {
        let units = buffer.count / DataStore.blockSize
        let stored = try records(first: first, count: units)
        for i in 0..<units {
            let unit = first + UInt64(i)
            let ciphertext = UnsafeRawBufferPointer(rebasing: buffer[i * DataStore.blockSize..<(i + 1) * DataStore.blockSize])
            let (previous, current) = stored[i]
            let expected: UnitTag
            if DataFile.isZero(ciphertext) {
                if previous.isEmpty && current.isEmpty { continue }
                expected = try holeTag(unit: unit)
            } else {
                expected = try tag(unit: unit, ciphertext: ciphertext)
            }
            guard !(expected.matches(previous) || expected.matches(current)) else { continue }
            throw MetaStoreError.tampered(what: "data unit \(unit) (bytes \(unit * 4096)–\(unit * 4096 + 4095)) of file \(fileID) does not verify")
        }
    }

    /// Before units `first...` of `dataFD` change on disk to `ciphertext`
    /// (nil: become holes): each record becomes (what the unit holds now, what
    /// it will hold). Returns true when so many units wait to settle that the
    /// caller should sync and settle. `track: false` when the units are about
    /// to be cut off (truncation): nothing of them is left to settle.
    func prepare(first: UInt64, count: Int, ciphertext: UnsafeRawBufferPointer?, dataFD: Int32, track: Bool = true) throws -> Bool {
        var stored = try records(first: first, count: count)
        var next = [UnitTag](repeating: .empty, count: count)
        for i in 0..<count {
            let unit = first + UInt64(i)
            next[i] = try ciphertext.map { try tag(unit: unit, ciphertext: UnsafeRawBufferPointer(rebasing: $0[i * DataStore.blockSize..<(i + 1) * DataStore.blockSize])) }
                ?? holeTag(unit: unit)
            stored[i] = (try heldNow(unit, stored[i], dataFD: dataFD), next[i])
        }
        try write(stored, first: first)
        if track { for i in 0..<count { pending[first + UInt64(i)] = next[i] } }
        return pending.count > Self.pendingLimit
    }

    /// The tag of what unit `unit` holds on disk now. The current slot, when
    /// this mount wrote the unit last (its writes complete before the next
    /// begins) or the previous slot is empty; else, after a crash, either slot
    /// may be what is on disk, so the unit is read to tell.
    private func heldNow(_ unit: UInt64, _ record: (UnitTag, UnitTag), dataFD: Int32) throws -> UnitTag {
        let (previous, current) = record
        if current.isEmpty { return previous.isEmpty ? try holeTag(unit: unit) : previous }
        if previous.isEmpty || pending[unit] != nil { return current }
        return try onDisk(unit, dataFD: dataFD).flatMap { $0.matches(previous) || $0.matches(current) ? $0 : nil } ?? current
    }

    /// The tag (or hole tag) of unit `unit` as the data file holds it.
    private func onDisk(_ unit: UInt64, dataFD: Int32) throws -> UnitTag? {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: DataStore.blockSize, alignment: DataStore.blockSize)
        defer { buffer.deallocate() }
        _ = try readFully(dataFD, into: buffer, at: unit * UInt64(DataStore.blockSize), path: String(path.dropLast(".tags".count)))
        return try tagger.held(unit: unit, UnsafeRawBufferPointer(buffer))
    }

    /// After a write of units `first...` failed part way (ENOSPC, EIO): the
    /// units are no longer pending, so no settle drops the tag of what is on
    /// disk (the next write reads the unit to tell); then, where it can, each
    /// record becomes (none, what the unit holds).
    func reconcile(first: UInt64, count: Int, dataFD: Int32) throws {
        for i in 0..<count { pending[first + UInt64(i)] = nil }
        let stored = try records(first: first, count: count)
        for i in 0..<count {
            let unit = first + UInt64(i)
            guard let held = try onDisk(unit, dataFD: dataFD), held.matches(stored[i].0) || held.matches(stored[i].1) else { continue }
            try write([(.empty, held)], first: unit)
        }
    }

    /// Units `range` that have records become holes on purpose, in chunks of
    /// 4096 units; a chunk whose records are all empty (never written) is left
    /// alone. `track: false` for a truncation (see `prepare`). Returns whether
    /// the caller should sync and settle.
    @discardableResult
    func prepareHoles(_ range: Range<UInt64>, dataFD: Int32, track: Bool) throws -> Bool {
        var crowded = false
        guard fd >= 0, !range.isEmpty else { return false }
        let end = min(range.upperBound, fileSize(fd) / UInt64(Self.recordSize))
        var unit = range.lowerBound
        while unit < end {
            let count = Int(min(end - unit, 4096))
            let stored = try records(first: unit, count: count)
            if stored.contains(where: { !$0.0.isEmpty || !$0.1.isEmpty }) {
                crowded = try prepare(first: unit, count: count, ciphertext: nil, dataFD: dataFD, track: track) || crowded
            }
            unit += UInt64(count)
        }
        return crowded
    }

    /// Empties the previous slot of every unit in `settled` whose record still
    /// has the given current tag: call only after the data file is durable.
    func settle(_ settled: [UInt64: UnitTag]) throws {
        // Units past the tag file's end were cut off since (their records are empty): nothing to settle,
        // and writing their records would lengthen the tag file past what the file needs.
        let recorded = length / UInt64(Self.recordSize)
        let units = settled.keys.filter { $0 < recorded }.sorted()
        for unit in settled.keys where unit >= recorded { pending[unit] = nil }
        var start = 0
        // Runs of consecutive units: one read and one write of their records each.
        while start < units.count {
            var end = start + 1
            while end < units.count, units[end] == units[end - 1] + 1, end - start < 4096 { end += 1 }
            var stored = try records(first: units[start], count: end - start)
            var changed = false
            for i in 0..<(end - start) {
                let unit = units[start + i], tag = settled[unit]!
                if stored[i].1.matches(tag) && !stored[i].0.isEmpty {
                    stored[i].0 = .empty
                    changed = true
                }
                if pending[unit].map({ $0.matches(tag) }) == true { pending[unit] = nil }
            }
            if changed { try write(stored, first: units[start]) }
            start = end
        }
    }

    /// Drops the records of units at and above `units`: call only after the
    /// data file was cut there (after `prepareHoles`, so no crash in between reads as EIO).
    func trim(units: UInt64) throws {
        pending = pending.filter { $0.key < units }
        guard fd >= 0, fileSize(fd) > units * UInt64(Self.recordSize) else { return }
        guard ftruncate(fd, off_t(units * UInt64(Self.recordSize))) == 0 else { throw MetaStoreError.io(operation: "ftruncate", path: path, errno: errno) }
    }

    /// Tags every unit of the data file `dataFD` as it stands (records with
    /// no previous tag), for ciphertext whose content digest the caller checks;
    /// returns that digest.
    func tagAll(dataFD: Int32) throws -> [UInt8] {
        try trim(units: 0)  // records left by an earlier, interrupted attempt
        let digester = ContentDigester(tagger)
        let batch = 256
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * DataStore.blockSize, alignment: DataStore.blockSize)
        defer { buffer.deallocate() }
        let units = (fileSize(dataFD) + UInt64(DataStore.blockSize) - 1) / UInt64(DataStore.blockSize)
        var first: UInt64 = 0
        while first < units {
            let count = Int(min(units - first, UInt64(batch)))
            let part = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * DataStore.blockSize])
            _ = try readFully(dataFD, into: part, at: first * UInt64(DataStore.blockSize), path: path)
            var records = [(UnitTag, UnitTag)](repeating: (.empty, .empty), count: count)
            for i in 0..<count {
                let unit = UnsafeRawBufferPointer(rebasing: part[i * DataStore.blockSize..<(i + 1) * DataStore.blockSize])
                if !DataFile.isZero(unit) {
                    records[i].1 = try tag(unit: first + UInt64(i), ciphertext: unit)
                    try digester.add(unit: first + UInt64(i), tag: records[i].1)
                }
            }
            try write(records, first: first)
            first += UInt64(count)
        }
        try sync()
        return digester.finalize()
    }

    /// The content digest (see `ContentDigester`) of the first `units` units,
    /// from their records. A record that still holds two tags (a crash left
    /// it) is resolved by reading the unit when `dataFD` is given, and
    /// rewritten with the one tag that matches (the caller syncs); without
    /// `dataFD` it is refused: a file whose digest was recorded was settled.
    func contentDigest(units: UInt64, dataFD: Int32?) throws -> [UInt8] {
        let digester = ContentDigester(tagger)
        let end = min(units, length / UInt64(Self.recordSize))
        var first: UInt64 = 0
        while first < end {
            let count = Int(min(end - first, 4096))
            var stored = try records(first: first, count: count)
            var resolved = false
            for i in 0..<count {
                let unit = first + UInt64(i)
                var (previous, current) = stored[i]
                if !previous.isEmpty {
                    guard let dataFD else {
                        throw MetaStoreError.tampered(what: "the tag record of unit \(unit) of file \(fileID) holds two tags, but the file was settled")
                    }
                    guard let held = try onDisk(unit, dataFD: dataFD), held.matches(previous) || held.matches(current) else {
                        throw MetaStoreError.tampered(what: "data unit \(unit) (bytes \(unit * 4096)–\(unit * 4096 + 4095)) of file \(fileID) does not verify")
                    }
                    (previous, current) = (.empty, held)
                    stored[i] = (previous, current)
                    resolved = true
                }
                if !current.isEmpty && !current.isHoleTag { try digester.add(unit: unit, tag: current) }
            }
            if resolved { try write(stored, first: first) }
            first += UInt64(count)
        }
        return digester.finalize()
    }

    func sync() throws {
        guard fd >= 0 else { return }
        guard fdatasync(fd) == 0 else { throw MetaStoreError.io(operation: "fsync", path: path, errno: errno) }
    }
}

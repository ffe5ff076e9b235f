import BlockCipher

/// A file's content digest (docs/FORMAT.md "Content digests"): SHA-256 over
/// "kmsfs-content-1" and, for every data unit in ascending order, le64(unit
/// index) ‖ its 16-byte tag. Holes (punched or never written) add nothing,
/// so the digest is the same whether it is computed from a settled tag
/// file or from the ciphertext alone: a snapshot view, an import and a deep
/// verify recompute it from the units they read and compare it with the
/// one the file's sealed row holds. The tags are keyed, so it commits to the
/// exact content: an older copy of a unit, a unit moved or zeroed, or a
/// unit appended changes it.
public final class ContentDigester {
    static let domain = Array("kmsfs-content-1".utf8)
    let tagger: UnitTagger
    private var hash = SHA256()
    private var next: UInt64 = 0
    /// The tags added, when kept (a snapshot view checks each read against them).
    private var kept: (units: [UInt64], tags: [UnitTag])?

    init(_ tagger: UnitTagger, keepTags: Bool = false) {
        self.tagger = tagger
        kept = keepTags ? ([], []) : nil
        Self.domain.withUnsafeBytes { hash.update($0) }
    }

    /// A digester for file `fileID`'s ciphertext, tagged with `mac` (the filesystem's unit MAC key).
    public convenience init(fileID: FileID, mac: MessageAuthenticator) {
        self.init(UnitTagger(fileID: fileID, mac: mac))
    }

    /// The content digest of an inline file whose only unit is `unit` (empty: a hole).
    static func inline(_ unit: [UInt8], tagger: UnitTagger) throws -> [UInt8] {
        let digester = ContentDigester(tagger)
        if !unit.isEmpty { try unit.withUnsafeBytes { try digester.add(ciphertext: $0, first: 0) } }
        return digester.finalize()
    }

    /// The same for file `fileID`, tagged with `mac`.
    public static func inline(_ unit: [UInt8], fileID: FileID, mac: MessageAuthenticator) throws -> [UInt8] {
        try inline(unit, tagger: UnitTagger(fileID: fileID, mac: mac))
    }

    /// Adds a data unit's tag; units must come in ascending order.
    func add(unit: UInt64, tag: UnitTag) throws {
        guard unit >= next else { throw MetaStoreError.tampered(what: "units of file \(tagger.fileID) out of order (unit \(unit) after \(next - 1))") }
        next = unit + 1
        var record = (unit.littleEndian, tag)
        withUnsafeBytes(of: &record) { hash.update(UnsafeRawBufferPointer(rebasing: $0[0..<24])) }
        kept?.units.append(unit)
        kept?.tags.append(tag)
    }

    /// Adds whole units of ciphertext starting at unit `first` (zero units are holes).
    public func add(ciphertext: UnsafeRawBufferPointer, first: UInt64) throws {
        let unit = DataStore.blockSize
        guard ciphertext.count % unit == 0 else {
            throw MetaStoreError.tampered(what: "a piece of file \(tagger.fileID) that is not whole units (\(ciphertext.count) bytes)")
        }
        for i in 0..<ciphertext.count / unit {
            let bytes = UnsafeRawBufferPointer(rebasing: ciphertext[i * unit..<(i + 1) * unit])
            if !DataFile.isZero(bytes) { try add(unit: first + UInt64(i), tag: try tagger.tag(unit: first + UInt64(i), ciphertext: bytes)) }
        }
    }

    /// The digest. Call once, after the last `add`.
    public func finalize() -> [UInt8] {
        var done = SHA256()
        swap(&done, &hash)
        return done.finalize()
    }

    /// The digest and the tags added (kept only with `keepTags`).
    func finalizeKeeping() -> (digest: [UInt8], kept: VerifiedContent) {
        let kept = self.kept ?? ([], [])
        return (finalize(), VerifiedContent(tagger: tagger, units: kept.units, tags: kept.tags))
    }
}

/// A snapshot view's file whose content digest was checked when it was
/// opened: the tags of its data units as of the snapshot, against which
/// every later read is checked (the deltas could change after the open).
public struct VerifiedContent: Sendable {
    let tagger: UnitTagger
    /// Ascending unit indexes of the data units, and their tags.
    let units: [UInt64]
    let tags: [UnitTag]

    /// Throws `.tampered` naming the first unit of `buffer` (units from
    /// `first`, holes as zero units) that is not what the snapshot held.
    func verify(_ buffer: UnsafeRawBufferPointer, first: UInt64) throws {
        let unit = DataStore.blockSize
        var index = lowerBound(first)
        for i in 0..<buffer.count / unit {
            let u = first + UInt64(i)
            while index < units.count && units[index] < u { index += 1 }
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[i * unit..<(i + 1) * unit])
            let expected = index < units.count && units[index] == u ? tags[index] : nil
            if DataFile.isZero(bytes) ? expected == nil : try expected.map({ try tagger.tag(unit: u, ciphertext: bytes).matches($0) }) == true { continue }
            throw MetaStoreError.tampered(what: "data unit \(u) (bytes \(u * 4096)–\(u * 4096 + 4095)) of file \(tagger.fileID) is not what the snapshot held")
        }
    }

    private func lowerBound(_ u: UInt64) -> Int {
        var (low, high) = (0, units.count)
        while low < high {
            let mid = (low + high) / 2
            if units[mid] < u { low = mid + 1 } else { high = mid }
        }
        return low
    }
}

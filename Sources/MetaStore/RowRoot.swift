import BlockCipher

/// The store-wide commitment to every metadata row (schema 2, docs/FORMAT.md
/// "Row root"): the sum modulo 2^256 of one keyed element per row of the
/// inode, entry, symlink and xattr tables. Each row already authenticates
/// itself and its place; the sum makes the *set* of rows authentic, so an
/// older copy of a single row put back (taken from an older meta.db or a
/// snapshot's image) no longer matches. The counters' tag covers the root,
/// and a sum can be moved row by row as rows change (add the new element,
/// subtract the old) without reading the others.
struct RowRoot: Equatable, Sendable {
    private(set) var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    static let byteCount = 32

    static let zero = RowRoot()

    init() {}

    /// From its stored little-endian form; nil unless 32 bytes.
    init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        words = (Self.word(bytes, 0), Self.word(bytes, 8), Self.word(bytes, 16), Self.word(bytes, 24))
    }

    var bytes: [UInt8] { le64(words.0) + le64(words.1) + le64(words.2) + le64(words.3) }

    static func == (a: RowRoot, b: RowRoot) -> Bool { a.words == b.words }

    mutating func add(_ element: RowRoot) {
        var carry: UInt64 = 0
        func step(_ x: UInt64, _ y: UInt64) -> UInt64 {
            let (s1, o1) = x.addingReportingOverflow(y)
            let (s2, o2) = s1.addingReportingOverflow(carry)
            carry = (o1 ? 1 : 0) + (o2 ? 1 : 0)
            return s2
        }
        words = (step(words.0, element.words.0), step(words.1, element.words.1), step(words.2, element.words.2), step(words.3, element.words.3))
    }

    /// Subtracting is adding the two's complement (modulo 2^256).
    mutating func subtract(_ element: RowRoot) {
        var negated = RowRoot()
        negated.words = (~element.words.0, ~element.words.1, ~element.words.2, ~element.words.3)
        negated.add(RowRoot(one: ()))
        add(negated)
    }

    private init(one: Void) { words = (1, 0, 0, 0) }

    private static func word(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }
}

/// The element of each kind of row: HMAC-SHA-256 under the metadata MAC key
/// over a domain ("R" and the table's letter), the row's place and its
/// stored bytes. An inode's sealed attributes already bind everything its
/// visible columns show, and an entry's tag is a function of its columns.
extension RowCodec {
    func inodeElement(_ ino: InodeNumber, sealed: [UInt8]) throws -> RowRoot? {
        try element([[0x52, 0x69], le64(ino.rawValue), sealed])
    }

    func entryElement(parent: InodeNumber, sealedName: [UInt8], ino: InodeNumber) throws -> RowRoot? {
        try element([[0x52, 0x65], le64(parent.rawValue), le64(ino.rawValue), sealedName])
    }

    func symlinkElement(_ ino: InodeNumber, target: [UInt8]) throws -> RowRoot? {
        try element([[0x52, 0x6c], le64(ino.rawValue), target])
    }

    func xattrElement(_ ino: InodeNumber, sealedName: [UInt8], sealedValue: [UInt8]) throws -> RowRoot? {
        try element([[0x52, 0x78], le64(ino.rawValue), le32(UInt32(sealedName.count)), sealedName, sealedValue])
    }

    /// nil on schema 1 (no root).
    private func element(_ parts: [[UInt8]]) throws -> RowRoot? {
        guard let keys else { return nil }
        return RowRoot(bytes: try keys.metadata.authenticate(parts, length: RowRoot.byteCount))
    }
}

/// One POSIX ustar member header (512 bytes) as a tar bundle uses it: a
/// regular file with a relative name. Parsing is strict because the bytes
/// come from outside: every numeric field must be octal digits ended by NUL
/// or space, the checksum must match, and anything kmsfs never writes (GNU
/// base-256 numbers, the ustar name prefix, non-file types) is refused rather
/// than interpreted. Layout: POSIX.1-2001 "ustar Interchange Format".
struct TarHeader: Equatable {
    var name: String
    var size: Int

    static let blockSize = 512
    /// Offset and width in bytes of each field kmsfs reads or writes.
    static let nameField = 0..<100, modeField = 100..<108, uidField = 108..<116, gidField = 116..<124
    static let sizeField = 124..<136, mtimeField = 136..<148, checksumField = 148..<156, typeOffset = 156
    static let magicField = 257..<263, versionField = 263..<265, prefixField = 345..<500
    /// Magic and version: POSIX writes "ustar\0" "00"; GNU tar writes "ustar " " \0".
    static let posixMagic = Array("ustar\u{0}00".utf8), gnuMagic = Array("ustar  \u{0}".utf8)

    /// Decodes `block`, or throws a one-line BundleError naming the field and `position`.
    static func parse(_ block: [UInt8], at position: UInt64) throws(BundleError) -> TarHeader {
        func refuse(_ why: String) -> BundleError { .corrupt("bad tar member header at byte \(position): \(why)") }
        guard block.count == blockSize else { throw refuse("short block") }
        let magic = block[magicField.lowerBound..<versionField.upperBound]
        guard magic.elementsEqual(posixMagic) || magic.elementsEqual(gnuMagic) else { throw refuse("not a ustar header") }
        guard let stored = number(block[checksumField]) else { throw refuse("the checksum field is not octal") }
        guard stored == checksum(block) else { throw refuse("checksum mismatch") }
        guard block[typeOffset] == UInt8(ascii: "0") || block[typeOffset] == 0 else { throw refuse("not a regular file (type \(block[typeOffset]))") }
        for (label, field) in [("mode", modeField), ("uid", uidField), ("gid", gidField), ("mtime", mtimeField)] where number(block[field]) == nil {
            throw refuse("the \(label) field is not octal")
        }
        // number() caps at 12 octal digits (64 GiB), so the size always fits an Int.
        guard let size = number(block[sizeField]) else { throw refuse("the size field is not an octal number") }
        guard block[prefixField].allSatisfy({ $0 == 0 }) else { throw refuse("it uses the ustar name prefix, which kmsfs never writes") }
        let rawName = block[nameField]
        guard let end = rawName.firstIndex(of: 0) else { throw refuse("the name fills its field") }
        guard let name = String(validating: rawName[..<end], as: UTF8.self), BundleKeys.isValid(name) else {
            throw refuse("the name is not a safe relative path")
        }
        return TarHeader(name: name, size: Int(size))
    }

    /// An octal number field: optional leading spaces, 1 to 12 octal digits, then only NULs
    /// and spaces. Nil for anything else (signs, other digits, GNU base-256, an empty field).
    static func number(_ field: ArraySlice<UInt8>) -> UInt64? {
        let digits = field.drop { $0 == 0x20 }.prefix { $0 >= 0x30 && $0 <= 0x37 }
        guard !digits.isEmpty, digits.count <= 12 else { return nil }
        guard field[digits.endIndex...].allSatisfy({ $0 == 0 || $0 == 0x20 }) else { return nil }
        return digits.reduce(0) { $0 << 3 | UInt64($1 - 0x30) }
    }

    /// The ustar checksum: the unsigned byte sum with the checksum field read as spaces.
    static func checksum(_ block: [UInt8]) -> UInt64 {
        var sum = UInt64(checksumField.count) * 0x20
        for i in block.indices where !checksumField.contains(i) { sum += UInt64(block[i]) }
        return sum
    }

    /// The header block kmsfs writes: mode 0600, owner 0, the current time, "ustar\0" "00".
    func encoded(mtime: Int) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: Self.blockSize)
        func put(_ text: String, at offset: Int) { h.replaceSubrange(offset..<offset + text.utf8.count, with: text.utf8) }
        func octal(_ value: Int, _ field: Range<Int>) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: max(0, field.count - 1 - digits.count)) + digits, at: field.lowerBound)
        }
        put(name, at: Self.nameField.lowerBound)
        octal(0o600, Self.modeField)
        octal(0, Self.uidField)
        octal(0, Self.gidField)
        octal(size, Self.sizeField)
        octal(mtime, Self.mtimeField)
        h[Self.typeOffset] = UInt8(ascii: "0")
        put("ustar", at: Self.magicField.lowerBound)
        put("00", at: Self.versionField.lowerBound)
        // Six digits, NUL, space: the form tar itself writes.
        let sum = String(Self.checksum(h), radix: 8)
        put(String(repeating: "0", count: 6 - sum.count) + sum, at: Self.checksumField.lowerBound)
        h[Self.checksumField.lowerBound + 6] = 0
        h[Self.checksumField.lowerBound + 7] = 0x20
        return h
    }
}

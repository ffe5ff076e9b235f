import Foundation
@testable import SnapExport
import TestSupport
import Testing

/// Damaged and hostile tar bundles: opening and reading one gives a valid
/// result or a BundleError, never a trap, a hang or an allocation of a size
/// the archive claims. Seeds are printed so a failure reproduces.
@Suite("Tar bundles under mutation")
struct TarFuzzTests {
    static let keys = ["chunks/00/0000", "chunks/01/0101", "chunks/02/0202", "chunks/03/0303", "manifests/nightly.jsonl"]
    static let sizes = [1, 511, 512, 1500, 3000]

    /// A bundle written by TarBundleStore itself: four chunks and a manifest member.
    static func sample() throws -> [UInt8] {
        let path = TarHeaderTests.tempPath("sample.tar")
        defer { unlink(path) }
        let store = try TarBundleStore(path: path, create: true)
        for (key, size) in zip(keys, sizes).dropLast() {
            try [UInt8](repeating: UInt8(size & 0xff), count: size).withUnsafeBytes { try store.put(key, bytes: $0, sha256: []) }
        }
        let manifest = TarHeaderTests.tempPath("manifest")
        defer { unlink(manifest) }
        _ = FileManager.default.createFile(atPath: manifest, contents: Data(repeating: 0x7b, count: sizes.last!))
        try store.putFile(keys.last!, path: manifest)
        return Array(FileManager.default.contents(atPath: path)!)
    }

    /// Opens `bytes` and reads every member it lists; nil if all of that worked.
    static func outcome(_ bytes: [UInt8], at path: String, rng: inout SplitMix) -> Error? {
        // A plain write: FileManager.createFile fsyncs, which 3,000 rounds cannot afford.
        #expect((try? Data(bytes).write(to: URL(fileURLWithPath: path))) != nil)
        do {
            let store = try TarBundleStore(path: path, create: false)
            for key in try store.list(prefix: "") {
                let bytes = try store.get(key, expectedSize: Int(rng.next() % 4096))
                #expect(bytes.count <= 4096)
            }
            return nil
        } catch { return error }
    }

    /// The offsets of the member headers in `archive` (from the sizes the sample was made with).
    static func headerOffsets() -> [Int] {
        var offsets: [Int] = [], position = 0
        for size in sizes {
            offsets.append(position)
            position += 512 + (size + 511) / 512 * 512
        }
        return offsets
    }

    /// One seeded mutation of the sample: bytes, a cut, or one header field rewritten.
    static func mutate(_ bytes: inout [UInt8], _ rng: inout SplitMix) {
        let header = headerOffsets()[Int(rng.next() % UInt64(sizes.count))]
        let fields = [TarHeader.nameField, TarHeader.modeField, TarHeader.sizeField, TarHeader.mtimeField, TarHeader.checksumField,
                      TarHeader.magicField, TarHeader.versionField, TarHeader.prefixField, 156..<157]
        let field = fields[Int(rng.next() % UInt64(fields.count))]
        func random(_ set: [UInt8]) -> UInt8 { set[Int(rng.next() % UInt64(set.count))] }
        switch rng.next() % 7 {
        case 0:  // flip bytes anywhere
            for _ in 0..<(1 + rng.next() % 4) { bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1) }
        case 1:  // cut short anywhere
            bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
        case 2:  // random bytes in one header field
            for i in field { bytes[header + i] = UInt8(truncatingIfNeeded: rng.next()) }
        case 3:  // octal-looking text (digits, signs, spaces, NULs, 8s and 9s) in one header field
            for i in field { bytes[header + i] = random(Array("0123456789+- \0\u{80}\u{ff}".utf8)) }
        case 4:  // a size of 11-12 random octal digits: up to 64 GiB
            for i in TarHeader.sizeField { bytes[header + i] = random(Array("01234567".utf8)) }
        case 5:  // a name from hostile parts
            let parts = ["..", ".", "", "/", "chunks", "ab", " ", "\u{1}", "a\u{7f}", "é", String(repeating: "n", count: 60)]
            let name = (0..<(1 + rng.next() % 4)).map { _ in parts[Int(rng.next() % UInt64(parts.count))] }.joined(separator: "/")
            let raw = Array(name.utf8.prefix(100))
            for i in TarHeader.nameField { bytes[header + i] = i < raw.count ? raw[i] : 0 }
        default:  // a block of random bytes at a block boundary
            let block = Int(rng.next() % UInt64(bytes.count / 512)) * 512
            for i in block..<block + 512 { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        }
        // Half the header edits get a valid checksum, so the field checks behind it are reached.
        if rng.next() % 2 == 0, header + 512 <= bytes.count {
            var block = Array(bytes[header..<header + 512])
            TarHeaderTests.resum(&block)
            bytes.replaceSubrange(header..<header + 512, with: block)
        }
    }

    @Test("3,000 seeded mutations of a bundle open and read as a valid result or a BundleError")
    func mutations() throws {
        let seed: UInt64 = 0x7a12_2026
        print("TarFuzzTests.mutations seed \(seed)")
        let original = try Self.sample()
        let path = TarHeaderTests.tempPath("case.tar")
        defer { unlink(path) }
        var rng = SplitMix(seed: seed)
        var refused = 0
        for round in 0..<3000 {
            var bytes = original
            Self.mutate(&bytes, &rng)
            let error = Self.outcome(bytes, at: path, rng: &rng)
            #expect(error == nil || error is BundleError, "round \(round): \(String(describing: error))")
            if error != nil { refused += 1 }
        }
        print("TarFuzzTests.mutations: \(refused) of 3000 refused, the rest opened")
        #expect(refused > 300)
    }

    @Test("5,000 random and near-valid header blocks parse or throw, never trap")
    func headerBlocks() throws {
        let seed: UInt64 = 0x0da7_a512
        print("TarFuzzTests.headerBlocks seed \(seed)")
        var rng = SplitMix(seed: seed)
        let valid = TarHeader(name: "chunks/ab/abcd", size: 1234).encoded(mtime: 1_790_000_000)
        #expect(try TarHeader.parse(valid, at: 0) == TarHeader(name: "chunks/ab/abcd", size: 1234))
        for _ in 0..<5000 {
            var block = valid
            for _ in 0..<(1 + rng.next() % 8) { block[Int(rng.next() % 512)] = UInt8(truncatingIfNeeded: rng.next()) }
            if rng.next() % 2 == 0 { TarHeaderTests.resum(&block) }
            if rng.next() % 8 == 0 { block = (0..<512).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
            if let header = try? TarHeader.parse(block, at: 0) {
                #expect(header.size >= 0 && header.size < 1 << 36)
                #expect(BundleKeys.isValid(header.name))
            }
        }
    }
}

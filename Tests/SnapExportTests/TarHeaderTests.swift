import Foundation
@testable import SnapExport
import Testing

/// Tar archives with hand-made bad member headers: opening one must throw a
/// BundleError (the CLI once trapped with exit 132 on a size of -1).
@Suite("Tar bundle headers")
struct TarHeaderTests {
    static func tempPath(_ name: String) -> String { NSTemporaryDirectory() + "kmsfs-tar-\(UUID().uuidString.prefix(8))-\(name)" }

    /// A header for `name` of `size` bytes with `field` (offset, bytes) overwritten and the checksum recomputed.
    static func header(name: String = "chunks/ab/abcd", size: Int = 4, patch: (offset: Int, bytes: [UInt8])? = nil, fixSum: Bool = true) -> [UInt8] {
        var h = TarHeader(name: name, size: size).encoded(mtime: 1_790_000_000)
        if let patch { h.replaceSubrange(patch.offset..<patch.offset + patch.bytes.count, with: patch.bytes) }
        if fixSum { resum(&h) }
        return h
    }

    /// Recomputes the checksum field (six octal digits, NUL, space) as tar does.
    static func resum(_ h: inout [UInt8]) {
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        let digits = Array(String(sum, radix: 8).utf8)
        let text = [UInt8](repeating: UInt8(ascii: "0"), count: 6 - digits.count) + digits
        h.replaceSubrange(148..<154, with: text)
        h[154] = 0
    }

    /// An archive: one header, `dataBytes` of data padded to a block, two zero blocks.
    static func archive(_ header: [UInt8], dataBytes: Int = 4) -> [UInt8] {
        let padded = (dataBytes + 511) / 512 * 512
        return header + [UInt8](repeating: 0x61, count: dataBytes) + [UInt8](repeating: 0, count: padded - dataBytes + 1024)
    }

    /// Opens `bytes` as a tar bundle: nil if accepted, else the error.
    static func open(_ bytes: [UInt8]) -> Error? {
        let path = tempPath("case.tar")
        defer { unlink(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        do {
            _ = try TarBundleStore(path: path, create: false)
            return nil
        } catch { return error }
    }

    static func field(_ text: String, width: Int) -> [UInt8] {
        Array(text.utf8) + [UInt8](repeating: 0, count: max(0, width - text.utf8.count))
    }

    @Test("an intact archive opens and reads back")
    func intact() throws {
        let path = Self.tempPath("ok.tar")
        defer { unlink(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(Self.archive(Self.header())))
        let store = try TarBundleStore(path: path, create: false)
        #expect(try store.list(prefix: "chunks/") == ["chunks/ab/abcd"])
        #expect(try store.get("chunks/ab/abcd", expectedSize: 4) == Array("aaaa".utf8))
    }

    /// GNU tar's own headers (both its default format and POSIX ustar) pass the strict parser.
    @Test("an archive made by tar(1) from a bundle's files opens", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/tar")))
    func madeByTar() throws {
        let root = Self.tempPath("tree")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/chunks/ab", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/chunks/ab/abcd", contents: Data(repeating: 0x61, count: 1000))
        for format in ["gnu", "ustar"] {
            let tar = Process()
            tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
            tar.arguments = ["--format=\(format)", "-C", root, "-cf", root + "/\(format).tar", "chunks/ab/abcd"]
            try tar.run()
            tar.waitUntilExit()
            let store = try TarBundleStore(path: root + "/\(format).tar", create: false)
            #expect(try store.get("chunks/ab/abcd", expectedSize: 1000) == [UInt8](repeating: 0x61, count: 1000), "format \(format)")
        }
    }

    @Test("a size of -1 is a BundleError, not a trap")
    func negativeSize() {
        let error = Self.open(Self.archive(Self.header(patch: (124, Self.field("-1", width: 12)))))
        #expect(error is BundleError, "got \(String(describing: error))")
    }

    @Test("sizes that are huge, signed, non-octal or base-256 are BundleErrors")
    func badSizes() {
        let base256: [UInt8] = [0x80] + [UInt8](repeating: 0, count: 3) + [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        let bad: [[UInt8]] = [
            Self.field("+7", width: 12), Self.field("0x10", width: 12), Self.field("00000000009", width: 12),
            Self.field("1 2", width: 12), Self.field("", width: 12), Self.field("      ", width: 12),
            base256, [UInt8](repeating: 0xff, count: 12), Self.field("0000000001\u{7f}", width: 12),
        ]
        for field in bad {
            let error = Self.open(Self.archive(Self.header(patch: (124, field))))
            #expect(error is BundleError, "size field \(field) gave \(String(describing: error))")
        }
    }

    /// A member running past the end of the file is what a crash during an append leaves, so it is
    /// dropped (README: "A member cut short by a crash is dropped on the next open"), not indexed:
    /// nothing of its claimed size is allocated, and reading it is a missing object.
    @Test("sizes past the end of the archive (up to 64 GiB) drop the member without allocating it")
    func sizePastEnd() throws {
        for size in ["77777777777", "777777777777", "00000004001"] {
            let path = Self.tempPath("past.tar")
            defer { unlink(path) }
            _ = FileManager.default.createFile(atPath: path, contents: Data(Self.archive(Self.header(patch: (124, Self.field(size, width: 12))))))
            let store = try TarBundleStore(path: path, create: false)
            #expect(try store.list(prefix: "") == [], "size \(size)")
            #expect(throws: BundleError.missing("chunks/ab/abcd is missing from \(path)")) { try store.get("chunks/ab/abcd", expectedSize: 4) }
        }
    }

    @Test("bad checksums, modes, mtimes, types and names are BundleErrors")
    func badFields() {
        var cases: [(String, [UInt8])] = [
            ("checksum off by one", { var h = Self.header(); h[153] = h[153] == 0x30 ? 0x31 : 0x30; return h }()),
            ("checksum not octal", Self.header(patch: (148, Self.field("12x456", width: 6)), fixSum: false)),
            ("mode not octal", Self.header(patch: (100, Self.field("-000600", width: 8)))),
            ("mtime not octal", Self.header(patch: (136, Self.field("9999999999", width: 12)))),
            ("directory type", Self.header(patch: (156, [UInt8(ascii: "5")]))),
            ("symlink type", Self.header(patch: (156, [UInt8(ascii: "2")]))),
            ("no magic", Self.header(patch: (257, Self.field("", width: 6)))),
            ("ustar prefix", Self.header(patch: (345, Self.field("x", width: 1)))),
        ]
        for name in ["", "/etc/passwd", "chunks/../../x", "chunks//x", "./x", "x\u{1}y", "chunks/ab/ "] {
            cases.append(("name \(name.debugDescription)", Self.header(patch: (0, Self.field(name, width: 100)))))
        }
        cases.append(("name not UTF-8", Self.header(patch: (0, [0x63, 0xff, 0xfe, 0]))))
        cases.append(("name without NUL", Self.header(patch: (0, [UInt8](repeating: 0x61, count: 100)))))
        for (label, header) in cases {
            let error = Self.open(Self.archive(header))
            #expect(error is BundleError, "\(label): got \(String(describing: error))")
        }
    }

    @Test("a chunk member larger than the manifest says is refused without reading it")
    func oversizedMember() throws {
        let path = Self.tempPath("big.tar")
        defer { unlink(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(Self.archive(Self.header(size: 4000), dataBytes: 4000)))
        let store = try TarBundleStore(path: path, create: false)
        #expect(throws: BundleError.self) { try store.get("chunks/ab/abcd", expectedSize: 4) }
    }
}

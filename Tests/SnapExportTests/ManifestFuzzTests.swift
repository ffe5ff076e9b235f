import BlockCipher
import Foundation
@testable import SnapExport
import TestSupport
import Testing

/// Hostile and damaged manifests: the reader must refuse every change with a
/// BundleError (never crash, never accept), and accept the intact one.
@Suite("Snapshot bundle manifests under mutation")
struct ManifestFuzzTests {
    func tempPath(_ name: String) -> String { NSTemporaryDirectory() + "kmsfs-manifest-\(UUID().uuidString.prefix(8))-\(name)" }

    /// A valid manifest with a few files and chunks.
    func sample() throws -> [UInt8] {
        let path = tempPath("sample")
        defer { unlink(path) }
        let header = ManifestHeader(filesystemUUID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", snapshotID: 3, snapshotName: "nightly", created: 1_790_000_000,
                                    chunkSize: 1 << 20, superblock: [UInt8](repeating: 0x4b, count: 4096), base: "weekly")
        let writer = try ManifestWriter(path: path, header: header)
        var rng = SplitMix(seed: 7)
        for m in 0..<2 { try writer.add(.metadataChunk(ChunkReference(offset: UInt64(m << 20), length: 1 << 20, sha256: digest(&rng)))) }
        for id in stride(from: UInt64(2), to: 30, by: 3) {
            let size = rng.next() % (5 << 20)
            try writer.add(.file(id: id, size: size))
            var offset: UInt64 = 0
            while offset < (size + 4095) / 4096 * 4096 {
                let length = Int(min(UInt64(1 << 20), (size + 4095) / 4096 * 4096 - offset))
                if rng.next() % 3 != 0 { try writer.add(.chunk(ChunkReference(offset: offset, length: length, sha256: digest(&rng)))) }
                offset += UInt64(length)
            }
        }
        try writer.finish()
        return Array(FileManager.default.contents(atPath: path)!)
    }

    func digest(_ rng: inout SplitMix) -> [UInt8] { (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }

    /// Runs the reader over `bytes`: nil if accepted, else the error.
    func outcome(_ bytes: [UInt8]) -> Error? {
        let path = tempPath("case")
        defer { unlink(path) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        do {
            let reader = try ManifestReader(path: path)
            try reader.verify()
            return nil
        } catch { return error }
    }

    @Test("the intact manifest is accepted, with its totals")
    func intact() throws {
        let bytes = try sample()
        #expect(outcome(bytes) == nil)
    }

    @Test("2,000 seeded mutations (flips, cuts, line edits) are all refused with a BundleError")
    func mutations() throws {
        let original = try sample()
        var rng = SplitMix(seed: 42)
        var refused = 0
        for round in 0..<2000 {
            var bytes = original
            var lines = original.split(separator: 0x0a, omittingEmptySubsequences: false).map(Array.init)
            switch rng.next() % 6 {
            case 0:  // flip bits of 1-4 bytes
                for _ in 0..<(1 + rng.next() % 4) {
                    let i = Int(rng.next() % UInt64(bytes.count))
                    bytes[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                }
            case 1:  // cut short anywhere
                bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
            case 2:  // drop a line
                lines.remove(at: Int(rng.next() % UInt64(lines.count - 1)))
                bytes = Array(lines.joined(separator: [0x0a]))
            case 3:  // duplicate a line
                let i = Int(rng.next() % UInt64(lines.count - 1))
                lines.insert(lines[i], at: i)
                bytes = Array(lines.joined(separator: [0x0a]))
            case 4:  // swap two lines
                let i = Int(rng.next() % UInt64(lines.count - 1)), j = Int(rng.next() % UInt64(lines.count - 1))
                guard i != j else { refused += 1; continue }
                lines.swapAt(i, j)
                bytes = Array(lines.joined(separator: [0x0a]))
            default:  // replace a digit
                let digits = bytes.indices.filter { bytes[$0] >= 0x30 && bytes[$0] <= 0x39 }
                let i = digits[Int(rng.next() % UInt64(digits.count))]
                bytes[i] = bytes[i] == 0x39 ? 0x30 : bytes[i] + 1
            }
            let error = outcome(bytes)
            if bytes == original { #expect(error == nil); refused += 1; continue }
            #expect(error is BundleError, "round \(round): \(error.map { "\($0)" } ?? "accepted a changed manifest")")
            if error is BundleError { refused += 1 }
        }
        #expect(refused == 2000)
    }

    /// Manifests a forger made with a correct hash line but hostile content.
    @Test("hostile records with a recomputed hash line are refused")
    func hostileWithValidHash() throws {
        let lines = String(decoding: try sample(), as: UTF8.self).split(separator: "\n").map(String.init)
        let header = lines[0]
        let hostile: [[String]] = [
            [#"{"f":"0000000000000002","size":4096}"#, #"{"c":[1152921504606846976,4096,"\#(String(repeating: "ab", count: 32))"]}"#],
            [#"{"f":"0000000000000002","size":4096}"#, #"{"c":[0,8192,"\#(String(repeating: "ab", count: 32))"]}"#],
            [#"{"f":"0000000000000002","size":-1}"#],
            [#"{"f":"000000000000000z","size":1}"#],
            [#"{"f":"0000000000000009","size":1}"#, #"{"f":"0000000000000003","size":1}"#],
            [#"{"f":"0000000000000002","size":9000}"#, #"{"c":[4096,4096,"\#(String(repeating: "ab", count: 32))"]}"#, #"{"c":[0,4096,"\#(String(repeating: "ab", count: 32))"]}"#],
            [#"{"c":[0,4096,"\#(String(repeating: "ab", count: 32))"]}"#],
            [#"{"f":"0000000000000002","size":4096}"#, #"{"m":[0,4096,"\#(String(repeating: "ab", count: 32))"]}"#],
            [#"{"f":"0000000000000002","size":4096}"#, #"{"c":[0,4096,"xyz"]}"#],
            [#"{"f":"0000000000000002","size":4096}"#, #"{"c":[3,4096,"\#(String(repeating: "ab", count: 32))"]}"#],
            [#"{"x":1}"#],
            [#"[1,2,3]"#],
        ]
        // The same construction with sound records is accepted (the harness itself is right).
        let sound = [#"{"f":"0000000000000002","size":9000}"#, #"{"c":[0,4096,"\#(String(repeating: "ab", count: 32))"]}"#]
        for (index, records) in ([sound] + hostile).enumerated() {
            let body = ([header] + records).map { $0 + "\n" }.joined()
            let digest = SHA256.hash(Array(body.utf8)).hexString
            // Totals that match the records, so only the check under test can refuse.
            var files = 0, chunks = 0, bytes = 0, meta = 0
            for r in records {
                let o = (try? JSONSerialization.jsonObject(with: Data(r.utf8))) as? [String: Any] ?? [:]
                if o["f"] != nil { files += 1 }
                if let c = o["c"] as? [Any] { chunks += 1; bytes += c[1] as? Int ?? 0 }
                if let m = o["m"] as? [Any] { meta += m[1] as? Int ?? 0 }
            }
            let end = #"{"end":{"bytes":\#(bytes),"chunks":\#(chunks),"files":\#(files),"metadataBytes":\#(meta)},"sha256":"\#(digest)"}"#
            let error = outcome(Array((body + end + "\n").utf8))
            if index == 0 {
                #expect(error == nil, "the sound manifest was refused: \(String(describing: error))")
            } else {
                #expect(error is BundleError, "hostile case \(index) was \(error.map { "\($0)" } ?? "accepted")")
            }
        }
        // Headers with bad fields.
        for bad in [#"{"format":"other","version":1}"#, #"{"format":"kmsfs-snapshot","version":99}"#,
                    #"{"format":"kmsfs-snapshot","version":1,"filesystem":"x","snapshot":{"id":1,"name":"n","created":1},"chunkSize":1000,"superblock":""}"#] {
            #expect(outcome(Array((bad + "\n").utf8)) is BundleError)
        }
    }
}

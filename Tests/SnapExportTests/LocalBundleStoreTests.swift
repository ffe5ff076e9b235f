import Foundation
@testable import SnapExport
import Testing

/// A directory bundle someone tampered with: chunks and manifests that are
/// symlinks, FIFOs or larger than the manifest says are refused quickly and
/// without reading them whole.
@Suite("Directory bundles with hostile files")
struct LocalBundleStoreTests {
    static let key = "chunks/ab/abcd"

    /// A fresh bundle directory holding one regular 4-byte chunk.
    static func bundle() throws -> LocalBundleStore {
        let root = NSTemporaryDirectory() + "kmsfs-local-\(UUID().uuidString.prefix(8))"
        let store = try LocalBundleStore(root: root, create: true)
        try Array("aaaa".utf8).withUnsafeBytes { try store.put(key, bytes: $0, sha256: []) }
        return store
    }

    /// Replaces the object under `key` with whatever `make` creates at its path.
    static func replace(_ key: String, in store: LocalBundleStore, _ make: (String) -> Int32) {
        let path = store.root + "/" + key
        unlink(path)
        #expect(make(path) == 0, "cannot create the test file: \(String(cString: strerror(errno)))")
    }

    static func cleanUp(_ store: LocalBundleStore) { try? FileManager.default.removeItem(atPath: store.root) }

    @Test("a regular chunk of the expected size reads back; a shorter one is returned for the caller to report")
    func regular() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        #expect(try store.get(Self.key, expectedSize: 4) == Array("aaaa".utf8))
        #expect(try store.get(Self.key, expectedSize: 9) == Array("aaaa".utf8))
        #expect(try store.exists(Self.key, size: 4))
    }

    @Test("a chunk larger than the manifest says is refused")
    func oversized() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        #expect(throws: BundleError.oversized(Self.key, at: store.root, expected: 3)) { try store.get(Self.key, expectedSize: 3) }
    }

    @Test("a chunk that is a symlink to /dev/zero is refused, and does not count as present")
    func symlinkToDevZero() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        Self.replace(Self.key, in: store) { symlink("/dev/zero", $0) }
        #expect(try !store.exists(Self.key, size: 0))
        let error = #expect(throws: BundleError.self) { try store.get(Self.key, expectedSize: 1 << 20) }
        #expect(error?.description.contains("symbolic link") == true, "\(String(describing: error))")
    }

    @Test("a chunk that is a symlink to a regular file is refused too")
    func symlinkToFile() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        let elsewhere = store.root + "/elsewhere"
        _ = FileManager.default.createFile(atPath: elsewhere, contents: Data("aaaa".utf8))
        Self.replace(Self.key, in: store) { symlink(elsewhere, $0) }
        #expect(throws: BundleError.self) { try store.get(Self.key, expectedSize: 4) }
    }

    @Test("a chunk that is a FIFO with no writer is refused at once (no hang)")
    func fifo() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        Self.replace(Self.key, in: store) { mkfifo($0, 0o600) }
        let started = Date()
        let error = #expect(throws: BundleError.self) { try store.get(Self.key, expectedSize: 4) }
        #expect(error?.description.contains("not a regular file") == true, "\(String(describing: error))")
        #expect(Date().timeIntervalSince(started) < 2)
    }

    @Test("a chunk that is a directory is refused")
    func directory() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        Self.replace(Self.key, in: store) { mkdir($0, 0o700) }
        #expect(throws: BundleError.self) { try store.get(Self.key, expectedSize: 4) }
    }

    @Test("a manifest that is a symlink to /dev/zero or a FIFO is refused by getFile")
    func manifestNotRegular() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        let key = "manifests/nightly.jsonl"
        let target = store.root + "/fetched"
        try FileManager.default.createDirectory(atPath: store.root + "/manifests", withIntermediateDirectories: true)
        Self.replace(key, in: store) { symlink("/dev/zero", $0) }
        #expect(throws: BundleError.self) { try store.getFile(key, path: target) }
        Self.replace(key, in: store) { mkfifo($0, 0o600) }
        #expect(throws: BundleError.self) { try store.getFile(key, path: target) }
        #expect(throws: BundleError.missing("manifests/other.jsonl is missing from \(store.root)")) { try store.getFile("manifests/other.jsonl", path: target) }
    }

    @Test("a missing chunk is a missing object")
    func missing() throws {
        let store = try Self.bundle()
        defer { Self.cleanUp(store) }
        #expect(throws: BundleError.missing("chunks/cd/cdef is missing from \(store.root)")) { try store.get("chunks/cd/cdef", expectedSize: 4) }
    }
}

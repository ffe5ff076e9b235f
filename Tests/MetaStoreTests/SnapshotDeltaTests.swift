import BlockCipher
import Foundation
@testable import MetaStore
import TestSupport
import Testing

/// Copy-before-write snapshots against a model: every snapshot, read through
/// its overlay, must equal the bytes the files had when it was taken, after
/// any mix of later writes, truncations, punches, deletions, new snapshots and
/// deletions of other snapshots (which merge deltas).
@Suite("Snapshot deltas against an in-memory model")
struct SnapshotDeltaTests {
    struct Model {
        var files: [UInt64: [UInt8]] = [:]
    }

    /// A new store with a key, a live data store that preserves for snapshots, and its snapshot manager.
    struct Fixture {
        let root: String
        let store: StorePaths
        let keys: FilesystemKeys
        let preserver: SnapshotPreserver
        let live: DataStore
        let manager: SnapshotManager

        init(_ name: String) throws {
            root = tempPath(name)
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            store = StorePaths(root: root)
            try DataStore.createLayout(at: store.data)
            keys = try FilesystemKeys(masterSecret: FilesystemKeys.newMasterSecret())
            preserver = try SnapshotPreserver(storeRoot: root)
            live = DataStore(directory: store.data, cipher: keys.data, preserver: preserver)
            manager = SnapshotManager(store: store)
        }

        /// Takes a snapshot with an empty metadata image whose file id limit is `limit`.
        @discardableResult
        func snapshot(_ name: String, limit: UInt64) throws -> SnapshotInfo {
            let info = try manager.create(name: name, now: 1, keys: nil) { path in
                let empty = path + ".new"
                _ = try MetadataStore(path: empty, names: keys.names, create: true)
                _ = try MetadataStore.writeImage(of: empty, to: path)
                for suffix in ["", "-wal", "-shm"] { unlink(empty + suffix) }
                return SnapshotImage(fileIDLimit: limit)
            }
            try preserver.reload()
            return info
        }

        /// A read-only view of `info`.
        func view(_ info: SnapshotInfo) -> DataStore {
            DataStore(directory: store.data, cipher: keys.data, overlay: SnapshotOverlay(storeRoot: root, snapshot: info))
        }
    }

    @Test("seeded random operations: every snapshot keeps its bytes")
    func differential() throws {
        for seed in 1...10 {
            try run(seed: UInt64(seed), steps: 300)
        }
    }

    func run(seed: UInt64, steps: Int) throws {
        let fixture = try Fixture("snapstore")
        let (live, manager, preserver) = (fixture.live, fixture.manager, fixture.preserver)
        var rng = SplitMix(seed: seed)
        var model = Model()
        var open: [UInt64: DataFile] = [:]
        var nextID: UInt64 = 2
        var taken: [(name: String, files: [UInt64: [UInt8]])] = []
        var counter = 0

        func file(_ id: UInt64) throws -> DataFile {
            if let f = open[id] { return f }
            let f = try live.open(FileID(id))
            open[id] = f
            return f
        }

        for step in 0..<steps {
            let op = rng.next() % 100
            let ids = model.files.keys.sorted()
            if op < 8 || ids.isEmpty {
                model.files[nextID] = []
                nextID += 1
            } else if op < 50 {
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                var bytes = model.files[id]!
                let offset = Int(rng.next() % 60_000), count = Int(rng.next() % 9_000) + 1
                let data = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next() | 1) }
                try data.withUnsafeBytes { try file(id).write(offset: UInt64(offset), data: $0, fileSize: UInt64(bytes.count)) }
                if bytes.count < offset + count { bytes += [UInt8](repeating: 0, count: offset + count - bytes.count) }
                bytes.replaceSubrange(offset..<offset + count, with: data)
                model.files[id] = bytes
            } else if op < 60 {
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                var bytes = model.files[id]!
                let newSize = rng.next() % 3 == 0 ? 0 : Int(rng.next() % 70_000)
                try file(id).truncate(from: UInt64(bytes.count), to: UInt64(newSize))
                bytes = newSize < bytes.count ? Array(bytes.prefix(newSize)) : bytes + [UInt8](repeating: 0, count: newSize - bytes.count)
                model.files[id] = bytes
            } else if op < 68 {
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                var bytes = model.files[id]!
                let offset = Int(rng.next() % 60_000), length = Int(rng.next() % 30_000) + 1
                try file(id).zero(offset: UInt64(offset), length: UInt64(length), fileSize: UInt64(bytes.count))
                if offset < bytes.count {
                    let end = min(bytes.count, offset + length)
                    bytes.replaceSubrange(offset..<end, with: [UInt8](repeating: 0, count: end - offset))
                }
                model.files[id] = bytes
            } else if op < 72 {
                let id = ids[Int(rng.next() % UInt64(ids.count))]
                open[id] = nil
                try live.remove(FileID(id))
                model.files[id] = nil
            } else if op < 76 {
                // Close: the next change reopens the ciphertext file by its path.
                open[ids[Int(rng.next() % UInt64(ids.count))]] = nil
            } else if op < 90 {
                // As the daemon does with writers paused: held-back writes reach the live files first.
                for f in open.values { try f.flushDeferred() }
                counter += 1
                let name = "s\(counter)"
                try fixture.snapshot(name, limit: nextID)
                taken.append((name, model.files))
            } else if !taken.isEmpty {
                let victim = Int(rng.next() % UInt64(taken.count))
                for f in open.values { try f.flushDeferred() }
                try manager.delete(name: taken[victim].name)
                try preserver.reload()
                taken.remove(at: victim)
            }
            // Check every snapshot still reads as taken (a sample of steps, and the last),
            // and every live file as the model has it (writes held back for a delta sync included).
            guard step % 13 == 0 || step == steps - 1 else { continue }
            for (id, bytes) in model.files {
                let got = try file(id).read(offset: 0, count: bytes.count + 10, fileSize: UInt64(bytes.count)) { Array($0) }
                let same = got == bytes
                #expect(same, "seed \(seed) step \(step): live file \(id)")
                if !same { return }
            }
            let catalog = try SnapshotCatalog.load(manager.paths)
            #expect(catalog.snapshots.map(\.name) == taken.map(\.name))
            for (info, expected) in zip(catalog.snapshots, taken) {
                let view = fixture.view(info)
                for (id, bytes) in expected.files {
                    let got = try view.open(FileID(id)).read(offset: 0, count: bytes.count + 10, fileSize: UInt64(bytes.count)) { Array($0) }
                    let same = got == bytes  // compared outside #expect: it would print both arrays
                    #expect(same, "seed \(seed) step \(step) snapshot \(info.name) file \(id): \(got.count) bytes read, \(bytes.count) expected")
                    if !same { return }
                }
            }
        }
        // The live files, reopened by path once closed, hold the model's bytes too.
        for f in open.values { try f.flushDeferred() }
        open = [:]
        for (id, bytes) in model.files {
            let got = try live.open(FileID(id)).read(offset: 0, count: bytes.count + 10, fileSize: UInt64(bytes.count)) { Array($0) }
            let same = got == bytes
            #expect(same, "seed \(seed): live file \(id) after reopening")
        }
        // Deleting every snapshot leaves no snapshot directories behind.
        for s in taken { try manager.delete(name: s.name) }
        let left = try FileManager.default.contentsOfDirectory(atPath: manager.paths.root).filter { $0 != "catalog" }
        #expect(left.isEmpty, "seed \(seed): \(left)")
    }

    @Test("a delete that crashed is finished by deleting again, at any point")
    func interruptedDelete() throws {
        let fixture = try Fixture("snapdel")
        let manager = fixture.manager
        for name in ["a", "b", "c"] { try fixture.snapshot(name, limit: 2) }
        // Crash 1: marked deleting, nothing else done. Crash 2: directory already gone, catalog not rewritten.
        var catalog = try SnapshotCatalog.load(manager.paths)
        catalog.snapshots[1].deleting = true
        catalog.snapshots[2].deleting = true
        try catalog.save(manager.paths)
        try removeTree(manager.paths.directory(catalog.snapshots[2]))
        #expect(try manager.list().filter(\.deleting).map(\.name) == ["b", "c"])
        try manager.delete(name: "c")
        try manager.delete(name: "b")
        #expect(try manager.list().map(\.name) == ["a"])
        var report = ConsistencyReport()
        manager.check(repair: false, into: &report)
        #expect(report.problems.isEmpty, "\(report.problems)")
    }

    @Test("a snapshot costs no data copy; a later overwrite copies only the units it touches")
    func copyOnWriteGranularity() throws {
        let fixture = try Fixture("snapcost")
        let f = try fixture.live.open(FileID(7))
        let big = [UInt8](repeating: 0x5A, count: 16 << 20)
        try big.withUnsafeBytes { try f.write(offset: 0, data: $0, fileSize: 0) }
        let manager = fixture.manager
        let info = try fixture.snapshot("a", limit: 8)
        #expect(try FileManager.default.contentsOfDirectory(atPath: manager.paths.deltaDirectory(info)).isEmpty)
        let patch = [UInt8](repeating: 0x11, count: 10_000)
        try patch.withUnsafeBytes { try f.write(offset: 5 << 20, data: $0, fileSize: UInt64(big.count)) }
        let deltaBytes = (try FileManager.default.attributesOfItem(atPath: manager.paths.delta(info, 7))[.size] as? Int) ?? 0
        var st = stat()
        stat(manager.paths.delta(info, 7), &st)
        // 10,000 bytes at an unaligned offset touch 3 units: 3 units + the header allocated, whatever the file's size.
        #expect(Int(st.st_blocks) * 512 <= 4 * 4096)
        #expect(deltaBytes > 5 << 20)  // sparse: units live at their offsets
        let view = fixture.view(info)
        let old = try view.open(FileID(7)).read(offset: 5 << 20, count: 10_000, fileSize: UInt64(big.count)) { Array($0) }
        #expect(old.allSatisfy { $0 == 0x5A } && old.count == 10_000)
    }
}

import BlockCipher
import Locking
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// One inode's ciphertext file. Plaintext byte `o` lives in data unit
/// `o / 4096` at the same offset; a unit that is all zero bytes on disk is a
/// hole and reads as zeros (a real ciphertext is all-zero with probability 2^-32768).
/// Invariant: plaintext bytes past the file size inside the last unit are zero.
///
/// Not synchronised: the caller holds the inode's lock (shared for reads,
/// exclusive for writes and truncation).
public final class DataFile: @unchecked Sendable {
    // @unchecked: the fd is immutable; callers serialise conflicting calls.
    static let unit = DataStore.blockSize
    public let id: FileID
    public let path: String
    /// The live ciphertext file; replaced when a truncate to zero moves the
    /// old one into a snapshot. -1 in a snapshot view of a file with no live data.
    var fd: Int32
    let cipher: XTSCipher
    /// Live filesystem: keeps what the newest snapshot needs before a unit changes.
    let preserver: SnapshotPreserver?
    /// Snapshot view: where units that changed since the snapshot are found.
    let overlay: SnapshotOverlay?
    /// This file's delta in the newest snapshot, for the preserver's epoch `deltaEpoch`.
    private var delta: DeltaWriter?
    private var deltaEpoch: UInt64 = 0
    /// Copy-before-write with one sync per batch: live units whose old
    /// contents were copied into the delta but not made durable yet wait
    /// here, encrypted, until one fdatasync of the delta lets them all go to
    /// the live file (`flushDeferred`). Reads see them; every other change
    /// of the file, fsync, release, a snapshot and a timer flush them first.
    /// Distinct units only: a write to a unit already here flushes first.
    private var deferred: [(first: UInt64, ciphertext: [UInt8])] = []
    private var deferredUnits: Int { deferred.reduce(0) { $0 + $1.ciphertext.count / Self.unit } }
    private var deferredSince: UInt64 = 0
    /// Most units held back per file (512 KiB).
    static let maxDeferredUnits = 128
    /// The units' tags (integrity on, live filesystem); nil for XTS only.
    let tags: UnitTags?
    /// Where tags still waiting to settle go when the file is closed.
    private let store: DataStore?
    /// Snapshot view, integrity on: the tags of the units the snapshot holds.
    let verified: VerifiedContent?
    /// Integrity on: tags units, for an inline file's content digest.
    let tagger: UnitTagger?
    /// Integrity on: the metadata, where an inline file's unit is (`InlineUnits`).
    private let inlineStore: (any InlineUnitStore)?
    /// Whether the file's data is its inline unit (every other unit a hole) rather than its data file.
    public private(set) var isInline: Bool

    init(fd: Int32, id: FileID, cipher: XTSCipher, path: String, preserver: SnapshotPreserver? = nil, overlay: SnapshotOverlay? = nil,
         tags: UnitTags? = nil, store: DataStore? = nil, verified: VerifiedContent? = nil, tagger: UnitTagger? = nil,
         inline: (store: any InlineUnitStore, isInline: Bool)? = nil) {
        self.fd = fd
        self.id = id
        self.cipher = cipher
        self.path = path
        self.preserver = preserver
        self.overlay = overlay
        self.tags = tags
        self.store = store
        self.verified = verified
        self.tagger = tagger
        inlineStore = tagger == nil ? nil : inline?.store
        isInline = tagger != nil && inline?.isInline == true
    }

    deinit {
        if !deferred.isEmpty {
            // The last handle went without a release that flushed (an error path): write them now.
            do { try flushDeferred() } catch {
                let line = Array("kmsfs: writing deferred units of file \(id): \(error)\n".utf8)
                _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
            }
        }
        if fd >= 0 { close(fd) }
        if let tags, !tags.pending.isEmpty { store?.adoptUnsettled(id, tags.pending) }
    }

    /// Copy-before-write: called before units in `units` change on disk.
    func preserve(_ units: Range<UInt64>) throws {
        guard !units.isEmpty else { return }
        try flushDeferred()
        try currentDelta()?.preserve(units, liveFD: fd, livePath: path)
    }

    /// The delta of the newest snapshot, when it protects this file.
    private func currentDelta() throws -> DeltaWriter? {
        guard let preserver, !isInline else { return nil }  // an inline unit is in the snapshot's image
        let (latest, epoch) = preserver.current
        guard latest != nil else { return nil }
        if epoch != deltaEpoch {
            try flushDeferred()  // into the delta they were copied for
            delta = try preserver.deltaWriter(for: id.rawValue, liveFD: fd)
            deltaEpoch = epoch
        }
        return delta
    }

    /// Writes whole units of ciphertext after copy-before-write. When the
    /// units' old contents still have to be copied, the copy is written now
    /// and the live write held back (`deferred`) so that one delta sync
    /// covers a batch of writes; otherwise held-back writes go first.
    private func preserveAndWrite(_ ciphertext: UnsafeRawBufferPointer, first: UInt64) throws {
        let count = ciphertext.count / Self.unit
        let units = first..<first + UInt64(count)
        if count <= Self.maxDeferredUnits, let delta = try currentDelta(), delta.needsCopy(units), !overlapsDeferred(units) {
            if deferredUnits + count > Self.maxDeferredUnits { try flushDeferred() }
            // Space for the held units now, so a full disk fails this write, not the flush after it
            // (only where the range has a hole: an overwrite in place allocates nothing).
            let start = off_t(first) * off_t(Self.unit), length = off_t(ciphertext.count)
            let hole = lseek(fd, start, CLINUX_SEEK_HOLE)
            let reserved = (hole >= 0 && hole >= start + length) || fallocate(fd, CLINUX_FALLOC_FL_KEEP_SIZE, start, length) == 0
            if !reserved && errno == ENOSPC { throw MetaStoreError.io(operation: "fallocate", path: path, errno: ENOSPC) }
            // Counted before the copy: once copied without a sync, the write must be held back.
            if reserved, let store, store.noteDeferring(id, bytes: ciphertext.count) {
                do { try delta.preserve(units, liveFD: fd, livePath: path, sync: false) } catch {
                    _ = store.noteDeferring(id, bytes: -ciphertext.count, empty: deferred.isEmpty)
                    throw error
                }
                if deferred.isEmpty { deferredSince = MonotonicClock.nanoseconds() }
                deferred.append((first, Array(ciphertext)))
                return
            }
        }
        try preserve(units)
        try writeUnits(ciphertext, first: first)
    }

    private func overlapsDeferred(_ units: Range<UInt64>) -> Bool {
        deferred.contains { units.overlaps($0.first..<$0.first + UInt64($0.ciphertext.count / Self.unit)) }
    }

    /// Makes the delta's copies durable, then writes the held-back live
    /// units. Under the inode's exclusive lock. `olderThan`: only when the
    /// oldest waited that long (nanoseconds; the periodic flush).
    public func flushDeferred(olderThan age: UInt64 = 0) throws {
        guard !deferred.isEmpty, age == 0 || MonotonicClock.nanoseconds() &- deferredSince >= age else { return }
        try delta?.sync()
        while let next = deferred.first {
            try next.ciphertext.withUnsafeBytes { try writeUnits($0, first: next.first) }
            deferred.removeFirst()
            _ = store?.noteDeferring(id, bytes: -next.ciphertext.count, empty: deferred.isEmpty)
        }
    }

    /// Held-back units over the on-disk ones just read (their tags verified the old contents).
    private func overlayDeferred(_ buffer: UnsafeMutableRawBufferPointer, first: UInt64) {
        let range = first..<first + UInt64(buffer.count / Self.unit)
        for entry in deferred {
            let held = entry.first..<entry.first + UInt64(entry.ciphertext.count / Self.unit)
            let overlap = held.clamped(to: range)
            guard !overlap.isEmpty else { continue }
            entry.ciphertext.withUnsafeBytes { source in
                let from = Int(overlap.lowerBound - held.lowerBound) * Self.unit, to = Int(overlap.lowerBound - first) * Self.unit
                (buffer.baseAddress! + to).copyMemory(from: source.baseAddress! + from, byteCount: overlap.count * Self.unit)
            }
        }
    }

    /// Truncation to zero while a snapshot needs the old contents: the old
    /// ciphertext file becomes the snapshot's whole copy (O(1), not a copy)
    /// and a new empty one takes its place. Returns false if not applicable.
    private func retireForTruncation() throws -> Bool {
        guard let preserver, preserver.needsWhole(id.rawValue) else { return false }
        try tags?.prepareHoles(0..<(currentBackingSize() + UInt64(Self.unit) - 1) / UInt64(Self.unit), dataFD: fd, track: false)
        guard try preserver.keepWhole(id.rawValue, livePath: path) else { return false }
        let fresh = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fresh >= 0 else { throw MetaStoreError.io(operation: "open", path: path, errno: errno) }
        close(fd)
        fd = fresh
        try tags?.trim(units: 0)
        store?.dropUnsettled(id, from: 0)
        delta = nil
        deltaEpoch = preserver.current.epoch
        return true
    }

    /// Decrypts `[offset, offset+count)` clipped to `fileSize` and hands the
    /// plaintext to `body` without an extra copy.
    public func read<R>(offset: UInt64, count: Int, fileSize: UInt64, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let end = min(offset + UInt64(count), fileSize)
        guard offset < end else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let first = offset / UInt64(Self.unit)
        let last = (end - 1) / UInt64(Self.unit)
        let units = Int(last - first + 1)
        return try UnitBuffers.with(byteCount: units * Self.unit) { buffer in
            try readUnits(into: buffer, first: first)
            let skip = Int(offset - first * UInt64(Self.unit))
            return try body(UnsafeRawBufferPointer(rebasing: buffer[skip..<skip + Int(end - offset)]))
        }
    }

    /// Writes plaintext at `offset`, read-modify-writing partial units at either end.
    /// With `resultingSize` (only where `writesInline`): the write also records
    /// the file's new size and times, in the inline unit's transaction.
    public func write(offset: UInt64, data: UnsafeRawBufferPointer, fileSize: UInt64, resultingSize: UInt64? = nil) throws {
        guard data.count > 0 else { return }
        let end = offset + UInt64(data.count)
        if inlineStore != nil && overlay == nil && (isInline || currentBackingSize() == 0) {
            if end <= UInt64(InlineUnits.maxSize) { return try writeInline(offset: offset, data: data, resultingSize: resultingSize) }
            try leaveInline()
        }
        precondition(resultingSize == nil, "resultingSize is for writes that stay inline")
        try store?.beforeFileChange()
        try ensureFile()
        let first = offset / UInt64(Self.unit)
        let last = (end - 1) / UInt64(Self.unit)
        let units = Int(last - first + 1)
        try UnitBuffers.with(byteCount: units * Self.unit) { buffer in try write(units: units, first: first, last: last, offset: offset, data: data, fileSize: fileSize, into: buffer) }
    }

    /// The body of `write`: `buffer` holds units `first...last`.
    private func write(units: Int, first: UInt64, last: UInt64, offset: UInt64, data: UnsafeRawBufferPointer, fileSize: UInt64,
                       into buffer: UnsafeMutableRawBufferPointer) throws {
        let end = offset + UInt64(data.count)
        let headPartial = offset % UInt64(Self.unit) != 0
        let tailPartial = end % UInt64(Self.unit) != 0 && end < fileSize
        // Only units that exist (start below the old size) need their old contents.
        if headPartial && first * UInt64(Self.unit) < fileSize {
            try readUnits(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Self.unit]), first: first)
        } else {
            buffer.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: Self.unit)
        }
        if units > 1 {
            let tail = UnsafeMutableRawBufferPointer(rebasing: buffer[(units - 1) * Self.unit..<units * Self.unit])
            if tailPartial && last * UInt64(Self.unit) < fileSize {
                try readUnits(into: tail, first: last)
            } else {
                tail.initializeMemory(as: UInt8.self, repeating: 0)
            }
        } else if !headPartial && end % UInt64(Self.unit) != 0 && first * UInt64(Self.unit) < fileSize {
            try readUnits(into: buffer, first: first)
        }
        let skip = Int(offset - first * UInt64(Self.unit))
        (buffer.baseAddress! + skip).copyMemory(from: data.baseAddress!, byteCount: data.count)
        try cipher.encrypt(UnsafeRawBufferPointer(buffer), into: buffer, fileID: id, firstBlock: BlockIndex(first))
        try preserveAndWrite(UnsafeRawBufferPointer(buffer), first: first)
    }

    /// Changes the length from `oldSize` to `newSize`: when shrinking, the
    /// kept part of the last unit is re-encrypted with zeros after the end.
    public func truncate(from oldSize: UInt64, to newSize: UInt64) throws {
        let unit = UInt64(Self.unit)
        if isInline {
            // Units past the first are holes: only the first may need its tail cleared.
            guard newSize < oldSize, newSize < unit else { return }
            return try zeroInline(from: Int(newSize), to: Self.unit)
        }
        try store?.beforeFileChange()
        try ensureFile()
        try flushDeferred()
        if newSize == 0, try retireForTruncation() { return }
        if newSize < oldSize && newSize % unit != 0 {
            let index = newSize / unit
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.unit, alignment: Self.unit)
            defer { buffer.deallocate() }
            if try readUnits(into: buffer, first: index) {
                let keep = Int(newSize % unit)
                (buffer.baseAddress! + keep).initializeMemory(as: UInt8.self, repeating: 0, count: Self.unit - keep)
                try cipher.encrypt(UnsafeRawBufferPointer(buffer), into: buffer, fileID: id, firstBlock: BlockIndex(index))
                try preserve(index..<index + 1)
                try writeUnits(UnsafeRawBufferPointer(buffer), first: index)
            }
        }
        let backing = (newSize + unit - 1) / unit * unit
        let current = currentBackingSize()
        if newSize < oldSize || backing < current {
            let cut = backing / unit..<max(backing, (current + unit - 1) / unit * unit) / unit
            try preserve(cut)
            try tags?.prepareHoles(cut, dataFD: fd, track: false)
            guard ftruncate(fd, off_t(backing)) == 0 else { throw MetaStoreError.io(operation: "ftruncate", path: path, errno: errno) }
            try tags?.trim(units: backing / unit)
            store?.dropUnsettled(id, from: backing / unit)
        }
    }

    /// Makes `[offset, offset+length)` read as zeros: whole units become holes
    /// (FALLOC_FL_PUNCH_HOLE), partial ones are rewritten.
    public func zero(offset: UInt64, length: UInt64, fileSize: UInt64) throws {
        let unit = UInt64(Self.unit)
        let end = min(offset + length, fileSize)
        guard offset < end else { return }
        if isInline {
            guard offset < unit else { return }
            return try zeroInline(from: Int(offset), to: Int(min(end, unit)))
        }
        try store?.beforeFileChange()
        try ensureFile()
        try flushDeferred()
        let firstWhole = (offset + unit - 1) / unit
        let lastWhole = end / unit
        if firstWhole < lastWhole {
            try preserve(firstWhole..<lastWhole)
            let crowded = try tags?.prepareHoles(firstWhole..<lastWhole, dataFD: fd, track: true) ?? false
            let rc = fallocate(fd, CLINUX_FALLOC_FL_PUNCH_HOLE | CLINUX_FALLOC_FL_KEEP_SIZE, off_t(firstWhole * unit), off_t((lastWhole - firstWhole) * unit))
            guard rc == 0 else {
                let code = errno
                try? tags?.reconcile(first: firstWhole, count: Int(lastWhole - firstWhole), dataFD: fd)
                throw MetaStoreError.io(operation: "fallocate(punch)", path: path, errno: code)
            }
            if crowded { try syncAndSettle() }
        }
        // Partial ends are rewritten; without whole units between them the
        // range can still span two units (up to 2 x 4096 - 2 bytes).
        let zeros = [UInt8](repeating: 0, count: 2 * Self.unit)
        func rewrite(_ from: UInt64, _ to: UInt64) throws {
            guard from < to else { return }
            try zeros.withUnsafeBytes { try write(offset: from, data: UnsafeRawBufferPointer(rebasing: $0[0..<Int(to - from)]), fileSize: fileSize) }
        }
        if firstWhole >= lastWhole {
            try rewrite(offset, end)
        } else {
            try rewrite(offset, firstWhole * unit)
            try rewrite(lastWhole * unit, end)
        }
    }

    /// Preallocates backing space (FALLOC_FL_KEEP_SIZE semantics on the ciphertext file).
    public func preallocate(offset: UInt64, length: UInt64) throws {
        guard !isInline else { return }  // nothing to reserve: past the first unit an inline file is holes
        try store?.beforeFileChange()
        try ensureFile()
        let unit = UInt64(Self.unit)
        let start = offset / unit * unit
        let end = (offset + length + unit - 1) / unit * unit
        guard fallocate(fd, CLINUX_FALLOC_FL_KEEP_SIZE, off_t(start), off_t(end - start)) == 0 else {
            throw MetaStoreError.io(operation: "fallocate", path: path, errno: errno)
        }
    }

    /// fdatasync (or fsync) of the tag file and the ciphertext file.
    public func sync(dataOnly: Bool) throws {
        try syncTags()
        try syncUnits(dataOnly: dataOnly)
    }

    /// fdatasync of the tag file. The two files' syncs may run at once (an
    /// fsync does): each unit's record holds its old and new tag, so either
    /// file may reach the disk first.
    public func syncTags() throws { try tags?.sync() }

    /// fdatasync (or fsync) of the ciphertext file.
    public func syncUnits(dataOnly: Bool) throws {
        if let injected = FaultInjection.failure(.fsync) { throw MetaStoreError.io(operation: "fsync", path: path, errno: injected) }
        guard fd >= 0 else { return }  // never written, or inline: nothing of it is in a data file
        guard (dataOnly ? fdatasync(fd) : fsync(fd)) == 0 else { throw MetaStoreError.io(operation: "fsync", path: path, errno: errno) }
    }

    /// Tags written since the last settle: take them (under the inode's
    /// shared lock) before `sync`, and `settle` them after it.
    public func unsettledTags() -> UnsettledTags { UnsettledTags(units: tags?.pending ?? [:]) }

    /// Forgets the previous tags of units in `unsettled` that did not change
    /// since: their current content is durable now. Under the inode's exclusive lock.
    public func settle(_ unsettled: UnsettledTags) throws {
        guard let tags, !unsettled.units.isEmpty else { return }
        try store?.beforeFileChange()
        try flushDeferred()
        try tags.settle(unsettled.units)
    }

    // MARK: unit I/O

    /// Reads and decrypts whole units; returns whether any unit held data.
    @discardableResult
    func readUnits(into buffer: UnsafeMutableRawBufferPointer, first: UInt64) throws -> Bool {
        if let injected = FaultInjection.failure(.read) { throw MetaStoreError.io(operation: "read", path: path, errno: injected) }
        try readCiphertext(into: buffer, first: first)
        if !isInline {  // (an inline unit is checked against the content digest as it is read)
            try tags?.verify(UnsafeRawBufferPointer(buffer), first: first)
            try verified?.verify(UnsafeRawBufferPointer(buffer), first: first)
        }
        if !deferred.isEmpty { overlayDeferred(buffer, first: first) }
        // Decrypt runs of non-hole units with one call each.
        let units = buffer.count / Self.unit
        var anyData = false
        var runStart = -1
        for index in 0...units {
            let isData = index < units && !Self.isZero(UnsafeRawBufferPointer(rebasing: buffer[index * Self.unit..<(index + 1) * Self.unit]))
            if isData && runStart < 0 { runStart = index }
            if !isData && runStart >= 0 {
                let run = UnsafeMutableRawBufferPointer(rebasing: buffer[runStart * Self.unit..<index * Self.unit])
                try cipher.decrypt(UnsafeRawBufferPointer(run), into: run, fileID: id, firstBlock: BlockIndex(first + UInt64(runStart)))
                runStart = -1
                anyData = true
            }
        }
        return anyData
    }

    /// The ciphertext of whole units (holes as zero units): the live file's,
    /// or in a snapshot view the snapshot's.
    func readCiphertext(into buffer: UnsafeMutableRawBufferPointer, first: UInt64) throws {
        if isInline {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            let unit = try inlineCiphertext()
            if first == 0 && !unit.isEmpty { unit.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Self.unit]).copyMemory(from: $0) } }
        } else if let overlay {
            try overlay.read(id.rawValue, liveFD: fd, first: first, into: buffer)
        } else if fd < 0 {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)  // never written
        } else {
            try readFully(fd, into: buffer, at: first * UInt64(Self.unit), path: path)
        }
    }

    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let words = bytes.bindMemory(to: UInt64.self)
        var acc: UInt64 = 0
        for w in words { acc |= w }
        return acc == 0
    }

    /// Writes whole units of ciphertext, their tags first (see UnitTags).
    func writeUnits(_ ciphertext: UnsafeRawBufferPointer, first: UInt64) throws {
        let units = ciphertext.count / Self.unit
        let crowded = try tags?.prepare(first: first, count: units, ciphertext: ciphertext, dataFD: fd) ?? false
        do { try writeAll(ciphertext, at: first * UInt64(Self.unit)) } catch {
            // Part of it may have landed (ENOSPC, EIO): the records must name what did.
            try? tags?.reconcile(first: first, count: units, dataFD: fd)
            throw error
        }
        if crowded { try syncAndSettle() }
    }

    /// Too many units wait to settle: sync now and settle them (bounds memory
    /// and how long old unit copies still verify).
    private func syncAndSettle() throws {
        guard let tags else { return }
        let unsettled = tags.pending
        try sync(dataOnly: true)
        try tags.settle(unsettled)
    }

    func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws {
        if let injected = FaultInjection.failure(.write) { throw MetaStoreError.io(operation: "write", path: path, errno: injected) }
        try writeFully(fd, bytes, at: offset, path: path)
    }

    func currentBackingSize() -> UInt64 { fd >= 0 ? fileSize(fd) : 0 }

    /// Creates the data file at the first change that needs it (a file that
    /// is only created, or stays inline, never has one).
    private func ensureFile() throws {
        guard fd < 0, overlay == nil else { return }
        let created = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard created >= 0 else { throw MetaStoreError.io(operation: "create", path: path, errno: errno) }
        fd = created
    }

    // MARK: inline files (docs/FORMAT.md "Inline files")

    private var ino: InodeNumber { InodeNumber(id.rawValue) }

    /// The inline unit's ciphertext (empty: a hole), checked against the content digest sealed with it.
    private func inlineCiphertext() throws -> [UInt8] {
        guard let inlineStore, let tagger else { throw MetaStoreError.posix(EINVAL) }
        let (unit, digest) = try inlineStore.inlineUnit(ino)
        guard MessageAuthenticator.equal(try ContentDigester.inline(unit, tagger: tagger), digest) else {
            throw MetaStoreError.tampered(what: "the inline data of file \(id) is not what its inode sealed")
        }
        return unit
    }

    private func inlinePlaintext() throws -> [UInt8] {
        var unit = isInline ? try inlineCiphertext() : []
        if unit.isEmpty { return [UInt8](repeating: 0, count: Self.unit) }
        try unit.withUnsafeMutableBytes { try cipher.decrypt(UnsafeRawBufferPointer($0), into: $0, fileID: id, firstBlock: BlockIndex(0)) }
        return unit
    }

    /// Whether a write ending at `end` keeps (or makes) the file inline.
    public func writesInline(end: UInt64) -> Bool {
        inlineStore != nil && overlay == nil && (isInline || currentBackingSize() == 0) && end <= UInt64(InlineUnits.maxSize)
    }

    /// Encrypts `plaintext` as the first unit and stores it inline with its
    /// content digest (one transaction); an all-zero plaintext is stored as a hole.
    private func storeInline(_ plaintext: [UInt8], resultingSize: UInt64? = nil) throws {
        guard let inlineStore, let tagger else { throw MetaStoreError.posix(EINVAL) }
        var unit: [UInt8] = []
        if plaintext.contains(where: { $0 != 0 }) {
            unit = plaintext
            try unit.withUnsafeMutableBytes { try cipher.encrypt(UnsafeRawBufferPointer($0), into: $0, fileID: id, firstBlock: BlockIndex(0)) }
        }
        try inlineStore.setInlineUnit(ino, unit: unit, digest: try ContentDigester.inline(unit, tagger: tagger), size: resultingSize)
        isInline = true
    }

    private func writeInline(offset: UInt64, data: UnsafeRawBufferPointer, resultingSize: UInt64?) throws {
        var plaintext = try inlinePlaintext()
        plaintext.withUnsafeMutableBytes { (UnsafeMutableRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + data.count])).copyMemory(from: data) }
        try storeInline(plaintext, resultingSize: resultingSize)
    }

    private func zeroInline(from start: Int, to end: Int) throws {
        var plaintext = try inlinePlaintext()
        for i in start..<end { plaintext[i] = 0 }
        try storeInline(plaintext)
    }

    /// Moves an inline file's unit into its data file (a write past the first
    /// unit): written and made durable there before the metadata forgets it,
    /// so a crash leaves it in one place or both, never neither.
    public func leaveInline() throws {
        guard isInline, let inlineStore else { return }
        let unit = try inlineCiphertext()
        try store?.beforeFileChange()
        try ensureFile()
        if !unit.isEmpty { try unit.withUnsafeBytes { try writeUnits($0, first: 0) } }
        try sync(dataOnly: true)
        try inlineStore.endInline(ino)
        isInline = false
    }
}

/// Units whose previous tags may be forgotten once the file is durable (opaque).
public struct UnsettledTags: Sendable {
    let units: [UInt64: UnitTag]
    public var isEmpty: Bool { units.isEmpty }
}

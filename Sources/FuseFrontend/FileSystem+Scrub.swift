import MetaStore

/// What a scrub read and what did not verify.
public struct ScrubReport: Sendable {
    /// Inode, entry, symlink and xattr rows checked.
    public var rows = 0
    public var files = 0
    /// 4 KiB data units read and verified.
    public var units = 0
    public var bytes: UInt64 = 0
    public var badRows = 0
    public var badUnits = 0
    /// The first bad places (at most `placeLimit`), one line each.
    public var firstBad: [String] = []
    public static let placeLimit = 20

    public var isClean: Bool { badRows == 0 && badUnits == 0 }

    mutating func bad(_ place: String) {
        if firstBad.count < Self.placeLimit { firstBad.append(place) }
    }
}

extension FileSystem {
    /// Reads and verifies every metadata row and every data unit of the
    /// filesystem: the rows as fsck reads them (sealed attributes, entry tags,
    /// counters), the tree from the root (names, symlink targets, xattrs),
    /// and each regular file's units under its inode's shared lock, so a
    /// scrub of a mounted filesystem sees no half-written unit. `progress`
    /// gets (bytes verified, bytes in all). Changes nothing, except that a
    /// regular file without a data file gets an empty one, as any open does.
    /// Runs on the caller's thread and holds the metadata lock for the row
    /// check: a mounted filesystem's other requests wait while it scans.
    public func scrub(progress: (UInt64, UInt64) -> Void = { _, _ in }) throws -> ScrubReport {
        var report = ScrubReport()
        report.rows = try metadata.rowCount()
        let invalid = try metadata.invalidRows()
        report.badRows = invalid.count
        invalid.forEach { report.bad($0) }
        walkTree(into: &report, countFailures: invalid.isEmpty)
        let files = try metadata.regularFiles()
        let sizes = files.map { (try? metadata.attributes($0).size) ?? 0 }
        let total = sizes.reduce(0, +)
        for (ino, size) in zip(files, sizes) {
            report.files += 1
            try scrubData(ino, size: size, into: &report) { progress($0, total) }
        }
        return report
    }

    /// Every name, symlink target and xattr reachable from the root; a
    /// failure the row check did not already count is counted here.
    private func walkTree(into report: inout ScrubReport, countFailures: Bool) {
        func failed(_ place: String, _ error: Error) {
            guard countFailures else { return }
            report.badRows += 1
            report.bad("\(place): \(error)")
        }
        var directories: [InodeNumber] = [.root]
        while let dir = directories.popLast() {
            var cookie: Int64 = 2
            while true {
                let batch: [DirectoryEntry]
                do { batch = try metadata.readDirectory(dir, after: cookie, limit: 512) } catch {
                    failed("directory \(dir)", error)
                    break
                }
                guard let last = batch.last else { break }
                cookie = last.cookie
                for entry in batch {
                    let a = entry.attributes
                    if a.isDirectory { directories.append(a.ino) }
                    do {
                        if a.isSymlink { _ = try metadata.readLink(a.ino) }
                        for name in try metadata.listXattrs(a.ino) { _ = try metadata.getXattr(a.ino, name: name) }
                    } catch { failed("inode \(a.ino)", error) }
                }
            }
        }
    }

    /// Reads a file's units in 1 MiB steps; a step that fails is read again
    /// unit by unit to count and name the bad ones.
    private func scrubData(_ ino: InodeNumber, size: UInt64, into report: inout ScrubReport, _ advanced: (UInt64) -> Void) throws {
        let inode: OpenInode
        do { inode = try openData(ino) } catch let error as MetaStoreError {
            report.badUnits += 1
            report.bad("inode \(ino): \(error)")
            return
        }
        defer { release(ino, counted: false) }
        let step: UInt64 = 1 << 20, unit = UInt64(DataStore.blockSize)
        var offset: UInt64 = 0
        while offset < size {
            let count = min(step, size - offset)
            let ok = (try? inode.lock.reading { try inode.data.read(offset: offset, count: Int(count), fileSize: size) { _ in } }) != nil
            if !ok {
                var u = offset
                while u < offset + count {
                    do { try inode.lock.reading { try inode.data.read(offset: u, count: Int(unit), fileSize: size) { _ in } } } catch {
                        report.badUnits += 1
                        report.bad("inode \(ino), unit \(u / unit) (bytes \(u)–\(u + unit - 1)): \(error)")
                    }
                    u += unit
                }
            }
            report.units += Int((count + unit - 1) / unit)
            report.bytes += count
            offset += count
            advanced(report.bytes)
        }
    }
}

import BlockCipher
#if canImport(Glibc)
import Glibc
#endif

/// What `kmsfs fsck` found and did.
public struct ConsistencyReport: Sendable {
    /// Problems found, one line each.
    public var problems: [String] = []
    /// What --repair changed, one line each.
    public var repairs: [String] = []
    /// Problems --repair cannot fix (e.g. a name that does not decrypt).
    public var unrepairable: [String] = []
    public var inodes = 0
    public var entries = 0
    public var dataFiles = 0

    public var isClean: Bool { problems.isEmpty }
}

extension Catalog {
    /// Checks the metadata against itself and against the ciphertext files:
    /// SQLite integrity, entries pointing at existing inodes inside existing
    /// directories, names that decrypt, link counts, unreferenced and orphaned
    /// inodes, symlinks without targets, and data files without an inode.
    /// With `repair`, fixes what can be fixed without guessing.
    func check(repair: Bool, dataFileIDs: Set<UInt64>, removeDataFile: (UInt64) throws -> Void) throws -> ConsistencyReport {
        var report = ConsistencyReport()
        var integrity: [String] = []
        try db.query("PRAGMA integrity_check") { integrity.append($0.text(0)) }
        if integrity != ["ok"] {
            report.problems.append("SQLite integrity check: \(integrity.prefix(5).joined(separator: "; "))")
            report.unrepairable.append("the metadata database is damaged; restore it from a snapshot export")
            return report
        }
        let invalid = try invalidRows()
        if !invalid.isEmpty {
            report.problems += invalid
            report.unrepairable.append(invalid.contains(where: { $0.hasPrefix("tampered:") })
                ? "the metadata was tampered with: rows do not authenticate; restore it from a snapshot export"
                : "the metadata holds rows kmsfs never writes (edited or damaged); restore it from a snapshot export")
            return report
        }
        var counterRaise: UInt64?
        if let problem = counterProblem {
            report.problems.append("the metadata \(problem)")
            // Raised by a random 2^32..2^40 (as import does): numbers handed out
            // before the counter went back must not come again.
            counterRaise = min(UInt64(max(highestIno, 1)) + UInt64.random(in: (1 << 32)..<(1 << 40)), UInt64(InodeAttributes.maxInodeNumber))
        }
        struct Node { var mode: UInt32; var nlink: UInt32 }
        var nodes: [Int64: Node] = [:]
        try db.query("SELECT ino, mode, nlink FROM inodes") { nodes[$0.int(0)] = Node(mode: UInt32(truncatingIfNeeded: $0.int(1)), nlink: UInt32(truncatingIfNeeded: $0.int(2))) }
        var entries: [(id: Int64, parent: Int64, name: [UInt8], ino: Int64)] = []
        try db.query("SELECT id, parent, name, ino FROM entries") { entries.append(($0.int(0), $0.int(1), $0.blob(2), $0.int(3))) }
        var symlinkTargets = Set<Int64>()
        try db.query("SELECT ino FROM symlinks") { symlinkTargets.insert($0.int(0)) }
        report.inodes = nodes.count
        report.entries = entries.count
        report.dataFiles = dataFileIDs.count
        func isDir(_ n: Node) -> Bool { n.mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }

        var badEntries: [Int64] = []
        var references: [Int64: Int] = [:]
        var subdirectories: [Int64: Int] = [:]
        for e in entries {
            guard let parent = nodes[e.parent], isDir(parent) else {
                report.problems.append("entry \(e.id) is in inode \(e.parent), which is not a directory")
                badEntries.append(e.id)
                continue
            }
            guard let target = nodes[e.ino] else {
                report.problems.append("entry \(e.id) in directory \(e.parent) points at missing inode \(e.ino)")
                badEntries.append(e.id)
                continue
            }
            if (try? openName(e.name, parent: InodeNumber(UInt64(bitPattern: e.parent)))) == nil {
                report.problems.append("entry \(e.id) in directory \(e.parent): its name does not decrypt")
                report.unrepairable.append("entry \(e.id): name ciphertext damaged")
            }
            references[e.ino, default: 0] += 1
            if isDir(target) { subdirectories[e.parent, default: 0] += 1 }
        }
        var nlinkFixes: [(Int64, UInt32)] = []
        var purges: [Int64] = []
        for (ino, node) in nodes.sorted(by: { $0.key < $1.key }) {
            let refs = references[ino] ?? 0
            if isDir(node) {
                let expected = UInt32(2 + (subdirectories[ino] ?? 0))
                if ino != InodeNumber.root.rawValue.asInt64 && refs != 1 {
                    report.problems.append("directory \(ino) has \(refs) names (must have exactly 1)")
                    if refs == 0 { report.unrepairable.append("directory \(ino) is unreachable (its contents need a lost+found)") }
                }
                if node.nlink != expected {
                    report.problems.append("directory \(ino) has link count \(node.nlink), expected \(expected)")
                    nlinkFixes.append((ino, expected))
                }
            } else if refs == 0 {
                report.problems.append(node.nlink == 0 ? "inode \(ino) is unlinked but was never removed (orphan)" : "inode \(ino) has link count \(node.nlink) but no name")
                purges.append(ino)
            } else if node.nlink != UInt32(refs) {
                report.problems.append("inode \(ino) has link count \(node.nlink), but \(refs) name(s)")
                nlinkFixes.append((ino, UInt32(refs)))
            }
            if node.mode & UInt32(S_IFMT) == UInt32(S_IFLNK) && !symlinkTargets.contains(ino) {
                report.problems.append("symlink \(ino) has no target")
                report.unrepairable.append("symlink \(ino): target lost")
            }
        }
        let regular = Set(nodes.filter { $0.value.mode & UInt32(S_IFMT) == UInt32(S_IFREG) }.keys.map { UInt64(bitPattern: $0) })
        let strayData = dataFileIDs.subtracting(regular).sorted()
        for id in strayData { report.problems.append("data file \(FileID(id)) belongs to no file") }

        guard repair else { return report }
        try transaction {
            if let counterRaise {
                try writeCounters(nextIno: counterRaise)
                nextIno = counterRaise
                reservedIno = counterRaise
                report.repairs.append("raised the next inode number to \(counterRaise)")
            }
            for e in entries where badEntries.contains(e.id) {
                try deleteEntry(InodeNumber(UInt64(bitPattern: e.parent)), e.name)
                report.repairs.append("removed entry \(e.id)")
            }
            for (ino, nlink) in nlinkFixes {
                var node = try attributes(InodeNumber(UInt64(bitPattern: ino)))
                node.nlink = nlink
                try store(node)
                report.repairs.append("set the link count of inode \(ino) to \(nlink)")
            }
            for ino in purges {
                try deleteInodeRows(InodeNumber(UInt64(bitPattern: ino)))
                report.repairs.append("removed unreferenced inode \(ino)")
            }
        }
        cache.removeAll()
        dirty.removeAll()
        inodeElements.removeAll()
        for ino in purges { try removeDataFile(UInt64(bitPattern: ino)) }
        for id in strayData {
            try removeDataFile(id)
            report.repairs.append("removed stray data file \(FileID(id))")
        }
        return report
    }
}

extension UInt64 {
    var asInt64: Int64 { Int64(bitPattern: self) }
}

import ArgumentParser
import BlockCipher
import Foundation
import FuseFrontend
import MetaStore
import SnapExport
#if canImport(Glibc)
import Glibc
#endif

/// `kmsfs scrub NAME`: reads and verifies every data unit and metadata row,
/// through the mount daemon when the filesystem is mounted (which reads each
/// file under its inode lock), else directly under the store lock.
struct ScrubCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scrub",
        abstract: "Read and verify every data unit and metadata row of a filesystem, mounted or not.",
        discussion: "Exit status: 0 everything verified, 65 something did not (tampered or damaged: the first places are listed). Progress on a terminal (unmounted filesystems)."
    )
    static let verb = "scrub"

    @OptionGroup var homeOptions: HomeOptions
    @Argument(help: "Filesystem name.") var name: String
    @Option(help: "Passphrase file, for a filesystem created with --passphrase-file (unmounted filesystems only).") var passphraseFile: String?
    @Flag(help: "Print a JSON report.") var json = false

    func run() throws {
        var clean = true
        try userErrors {
            try Home.validateName(name)
            let home = homeOptions.resolved
            let store = home.store(name)
            guard FileManager.default.fileExists(atPath: store.superblock) else { throw MetaStoreError.storeNotFound(path: store.root) }
            let result: [String: Any]
            if let lock = StoreLock(path: store.root + "/lock", timeout: 0.3) {
                defer { withExtendedLifetime(lock) {} }
                result = try scrubHere(home: home, store: store)
            } else {
                let answer = try ControlChannel.request(storeRoot: store.root, Self.verb, "")
                result = try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any] ?? [:]
            }
            clean = result["clean"] as? Bool == true
            AuditLog.record(home, "scrub", ["filesystem": name, "uuid": result["uuid"] ?? "", "result": clean ? "clean" : "failed",
                                            "badUnits": result["badUnits"] ?? 0, "badRows": result["badRows"] ?? 0])
            writeStdout(json ? String(decoding: try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self) + "\n"
                             : "\(name) " + Self.text(result))
        }
        if !clean { throw ExitCode(ExitCodes.corruptOrUnsupported) }
    }

    /// The unmounted case: unlock, open, scrub, and compare with the rollback anchor.
    private func scrubHere(home: Home, store: StorePaths) throws -> [String: Any] {
        try StoreUpgrade.finishInterrupted(store)
        let unlocked = try Unlock.open(store, home: home, passphrase: try SecretInput.passphrase(file: passphraseFile), purpose: "scrub")
        let (superblock, keys) = (unlocked.superblock, unlocked.keys)
        let metadata = try MetadataStore(path: store.metadata, names: keys.names, integrity: keys.integrity, create: false, exclusive: true)
        let fileSystem = FileSystem(metadata: metadata, dataStore: DataStore(directory: store.data, cipher: keys.data, unitMAC: keys.integrity?.units),
                                    storeRoot: store.root, readOnly: true)
        let started = Date()
        var progress: SnapExport.Progress?
        var shown: UInt64 = 0
        var report = try fileSystem.scrub { done, total in
            if progress == nil { progress = SnapExport.Progress(verb: "scrub \(name)", totalBytes: total, enabled: !json) }
            progress?.advance(Int(done - shown))
            shown = done
        }
        progress?.finish()
        if metadata.hasIntegrity, let anchored = try RollbackAnchor(home: home, superblock: superblock, name: name).read(),
           metadata.generation < anchored.generation || metadata.instance != anchored.instance {
            report.badRows += 1
            report.firstBad.insert(anchored.instance != metadata.instance ? "the store is another copy of the filesystem than the one this home last mounted (rolled back)"
                                   : "the store is at generation \(metadata.generation), older than generation \(anchored.generation) that this home last saw (rolled back)", at: 0)
        }
        return Self.encode(report, superblock: superblock, seconds: Date().timeIntervalSince(started))
    }

    /// The daemon's answer to the `scrub` control request.
    static func serve(_ fileSystem: FileSystem, superblock: Superblock) throws -> String {
        let started = Date()
        let object = encode(try fileSystem.scrub(), superblock: superblock, seconds: Date().timeIntervalSince(started))
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    static func encode(_ r: ScrubReport, superblock: Superblock, seconds: Double) -> [String: Any] {
        ["uuid": superblock.uuidString, "integrity": superblock.integrityMode, "rows": r.rows, "files": r.files, "units": r.units,
         "bytes": Int(r.bytes), "badRows": r.badRows, "badUnits": r.badUnits, "firstBad": r.firstBad, "clean": r.isClean,
         "seconds": (seconds * 100).rounded() / 100]
    }

    static func text(_ r: [String: Any]) -> String {
        let integrity = r["integrity"] as? String ?? "?"
        var out = "(\(r["uuid"] ?? "")): integrity \(integrity); \(r["rows"] ?? 0) rows, \(r["files"] ?? 0) files, \(r["units"] ?? 0) units "
            + "(\(humanBytes(UInt64(r["bytes"] as? Int ?? 0)))) read in \(r["seconds"] ?? 0) s: "
        if r["clean"] as? Bool == true {
            out += integrity == "on" ? "all verified\n" : "readable (XTS only: data units and attributes cannot be verified)\n"
        } else {
            out += "\(r["badUnits"] ?? 0) unit(s) and \(r["badRows"] ?? 0) row(s) did not verify\n"
            for place in r["firstBad"] as? [String] ?? [] { out += "bad: \(place)\n" }
        }
        return out
    }
}

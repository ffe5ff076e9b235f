import ArgumentParser
import BlockCipher
import Foundation
import KeyVault
import MetaStore

/// `kmsfs fsck NAME [--repair]`: checks an unmounted filesystem's store.
/// Exit codes follow fsck(8): 0 clean, 1 problems found and all repaired,
/// 4 problems left (run with --repair, or restore from a snapshot export).
struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Check (and with --repair, fix) an unmounted filesystem: superblock, key, metadata, link counts, orphaned and stray data.",
        discussion: "Exit status as fsck(8): 0 clean, 1 errors corrected, 4 errors left uncorrected."
    )

    @OptionGroup var homeOptions: HomeOptions
    @Argument(help: "Filesystem name.") var name: String
    @Flag(help: "Fix what can be fixed without guessing: dangling entries, link counts, orphaned inodes, stray data files.") var repair = false
    @Option(help: "Passphrase file, for a filesystem created with --passphrase-file.") var passphraseFile: String?
    @Flag(help: "Print a JSON report.") var json = false

    func run() throws {
        var status: Int32 = 0
        try userErrors {
            try Home.validateName(name)
            let home = homeOptions.resolved
            let store = home.store(name)
            guard FileManager.default.fileExists(atPath: store.superblock) else { throw MetaStoreError.storeNotFound(path: store.root) }
            guard let lock = StoreLock(path: store.root + "/lock", timeout: 0.3) else {  // isHeld probes take it for an instant
                throw UserFacingError("filesystem \(name) is mounted or in use; unmount it first", exitCode: ExitCodes.usage)
            }
            try StoreUpgrade.finishInterrupted(store)
            // The superblock (checksummed copies) and the key: Unlock refuses a damaged one or a wrong key.
            let unlocked = try Unlock.open(store, home: home, passphrase: try SecretInput.passphrase(file: passphraseFile), purpose: "fsck")
            let (superblock, keys) = (unlocked.superblock, unlocked.keys)
            let metadata = try MetadataStore(path: store.metadata, names: keys.names, integrity: keys.integrity, create: false, exclusive: true, checking: true)
            // With the preserver, repairs that delete data (orphans, strays) keep what snapshots still need.
            let data = DataStore(directory: store.data, cipher: keys.data, unitMAC: keys.integrity?.units, preserver: try SnapshotPreserver(storeRoot: store.root))
            var report = try metadata.check(repair: repair, data: data)
            SnapshotManager(store: store).check(repair: repair, keys: keys.integrity, into: &report)
            try metadata.sync(advance: repair)
            withExtendedLifetime(lock) {}
            let left = repair ? report.unrepairable : report.problems
            status = report.isClean ? 0 : (left.isEmpty ? 1 : 4)
            if json {
                let object: [String: Any] = ["filesystem": name, "uuid": superblock.uuidString, "inodes": report.inodes,
                                             "entries": report.entries, "data_files": report.dataFiles, "problems": report.problems,
                                             "repairs": report.repairs, "unrepaired": left, "status": Int(status),
                                             "passkeys": unlocked.answered, "failedPasskeys": unlocked.failed.map(\.passkey)]
                try writeJSON(object)
            } else {
                writeStdout("\(name) (\(superblock.uuidString)): superblock ok, key ok (\(unlocked.summary)), \(report.inodes) inodes, \(report.entries) entries, \(report.dataFiles) data files\n")
                for p in report.problems { writeStdout("problem: \(p)\n") }
                for r in report.repairs { writeStdout("repaired: \(r)\n") }
                let clean = superblock.hasIntegrity ? "clean (the metadata: 'kmsfs scrub \(name)' reads and verifies every data unit)\n" : "clean\n"
                writeStdout(report.isClean ? clean : left.isEmpty ? "all problems repaired\n"
                            : "\(left.count) problem(s) left" + (repair ? "" : report.unrepairable.isEmpty ? "; run with --repair"
                                                                   : "; some cannot be repaired: \(report.unrepairable[0])") + "\n")
            }
        }
        if status != 0 { throw ExitCode(status) }
    }
}

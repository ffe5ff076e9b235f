import ArgumentParser
import Foundation
import MetaStore
import SnapExport

extension FsCommand {
    struct Upgrade: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give an XTS-only filesystem (release 1.0, or --no-integrity) integrity, in place and crash-safely (unmounted).",
            discussion: "Seals every metadata row and tags every data unit as they are now, so check the store first: it refuses one fsck would not call clean.")

        @OptionGroup var homeOptions: HomeOptions
        @Argument(help: "Name of the filesystem.") var name: String
        @Option(help: "Passphrase file, for a filesystem created with --passphrase-file.") var passphraseFile: String?

        func run() throws {
            try userErrors {
                try Home.validateName(name)
                let home = homeOptions.resolved
                let store = home.store(name)
                guard FileManager.default.fileExists(atPath: store.superblock) else { throw MetaStoreError.storeNotFound(path: store.root) }
                guard let lock = StoreLock(path: store.root + "/lock", timeout: 0.3) else {
                    throw UserFacingError("filesystem \(name) is mounted or in use; unmount it first", exitCode: ExitCodes.usage)
                }
                // The upgrade writes back the superblock it read: no passkey change may run meanwhile.
                let homeLock = try HomeLock(home)
                defer { withExtendedLifetime((lock, homeLock)) {} }
                try StoreUpgrade.finishInterrupted(store)
                guard !(try SuperblockFile.read(store.superblock)).hasIntegrity else {
                    writeStdout("filesystem \(name) already has integrity\n")
                    return
                }
                let unlocked = try Unlock.open(store, home: home, passphrase: try SecretInput.passphrase(file: passphraseFile),
                                               purpose: "upgrade", upgrading: true)
                let (superblock, keys) = (unlocked.superblock, unlocked.keys)
                let progress = SnapExport.Progress(verb: "upgrade \(name)", totalBytes: StoreUsage.bytes(store.root + "/data"))
                var shown: UInt64 = 0
                let upgraded = try StoreUpgrade.run(store: store, superblock: superblock, keys: keys) { done in
                    progress.advance(Int(done - shown))
                    shown = done
                }
                progress.finish()
                AuditLog.record(home, "upgrade", ["filesystem": name, "uuid": upgraded.uuidString, "integrity": upgraded.integrityMode])
                writeStdout("upgraded filesystem \(name) (uuid \(upgraded.uuidString)): integrity on\n")
            }
        }
    }
}

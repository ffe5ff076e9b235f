import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Everything kmsfs writes into its home (metadata, logs, locks) is private.
umask(0o077)
ProcessHardening.apply()

// `mount -t kmsfs` runs /sbin/mount.kmsfs, a link to this binary: translate
// its arguments into `kmsfs mount`.
let invokedAs = (CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent }) ?? "kmsfs"
if invokedAs == "mount.kmsfs" {
    do {
        Kmsfs.main(try MountHelper.translate(Array(CommandLine.arguments.dropFirst())))
    } catch {
        writeStderr("mount.kmsfs: \(error)\n")
        exit(ExitCodes.usage)
    }
} else {
    Kmsfs.main()
}

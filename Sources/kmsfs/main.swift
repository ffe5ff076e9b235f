import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Everything kmsfs writes into its home (metadata, logs, locks) is private.
umask(0o077)
ProcessHardening.apply()

// `mount -t kmsfs` runs /sbin/mount.kmsfs and `mount -t fuse.kmsfs`
// /sbin/mount.fuse.kmsfs, links to this binary: translate their arguments
// into `kmsfs mount`.
let invokedAs = (CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent }) ?? "kmsfs"
if invokedAs == "mount.kmsfs" || invokedAs == "mount.fuse.kmsfs" {
    do {
        Kmsfs.main(try MountHelper.translate(Array(CommandLine.arguments.dropFirst())))
    } catch {
        writeStderr("mount.kmsfs: \(error)\n")
        exit(ExitCodes.usage)
    }
} else {
    Kmsfs.main()
}

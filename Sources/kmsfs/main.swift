import ArgumentParser
import Foundation

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

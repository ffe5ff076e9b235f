internal import CLinux

/// Every kmsfs process may hold a master secret, a KMS token or a passphrase
/// (the mount daemon for the whole mount): none writes a core file, and none
/// lets another process of the same uid read its memory or environment
/// through /proc or ptrace. Done first thing in main, before any secret is read.
enum ProcessHardening {
    static func apply() {
        _ = clinux_disable_core_files()
        _ = clinux_set_nondumpable()
    }
}

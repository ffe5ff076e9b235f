import BlockCipher
import Foundation
import KeyVault
#if canImport(Glibc)
import Glibc
#endif

/// Reads secrets from a file or an environment variable, never only from argv.
enum SecretInput {
    /// The passphrase from `--passphrase-file` or $KMSFS_PASSPHRASE, or nil.
    static func passphrase(file: String?) throws -> KeyMaterial? {
        if let file {
            // read(2) into one array that KeyMaterial takes over and wipes (no Data copy).
            guard var bytes = readSmallFile(file) else {
                throw UserFacingError("cannot read passphrase file \(file)", exitCode: ExitCodes.badConfig)
            }
            while let last = bytes.last, last == 0x0a || last == 0x0d { bytes.removeLast() }
            guard !bytes.isEmpty else { throw UserFacingError("passphrase file \(file) is empty", exitCode: ExitCodes.badConfig) }
            return KeyMaterial(consuming: &bytes)
        }
        // A String from the environment cannot be wiped (docs/FORMAT.md "Secrets in memory"): prefer a file.
        if let env = ProcessEnvironment.current["KMSFS_PASSPHRASE"], !env.isEmpty {
            var bytes = Array(env.utf8)
            return KeyMaterial(consuming: &bytes)
        }
        return nil
    }

    /// A file of at most 64 KiB read into one array, or nil.
    static func readSmallFile(_ path: String) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readAll(fd)
    }

    /// Everything `fd` gives until EOF, at most 64 KiB, in one array (no
    /// reallocation that would leave an unwiped copy); nil on a read error.
    static func readAll(_ fd: Int32) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: 64 << 10)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                wipe(&bytes)
                return nil
            }
            if n == 0 { break }
            count += n
        }
        // Shrinking in place keeps the one buffer; the tail was never written.
        bytes.removeLast(bytes.count - count)
        return bytes
    }
}

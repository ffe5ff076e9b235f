import Foundation
import KeyVault

/// Reads secrets from a file or an environment variable, never only from argv.
enum SecretInput {
    /// The passphrase from `--passphrase-file` or $KMSFS_PASSPHRASE, or nil.
    static func passphrase(file: String?) throws -> KeyMaterial? {
        if let file {
            guard var bytes = FileManager.default.contents(atPath: file).map({ Array($0) }) else {
                throw UserFacingError("cannot read passphrase file \(file)", exitCode: ExitCodes.badConfig)
            }
            while let last = bytes.last, last == 0x0a || last == 0x0d { bytes.removeLast() }
            guard !bytes.isEmpty else { throw UserFacingError("passphrase file \(file) is empty", exitCode: ExitCodes.badConfig) }
            return KeyMaterial(consuming: &bytes)
        }
        if let env = ProcessEnvironment.current["KMSFS_PASSPHRASE"], !env.isEmpty {
            var bytes = Array(env.utf8)
            return KeyMaterial(consuming: &bytes)
        }
        return nil
    }
}

import ArgumentParser
import Foundation
import FuseFrontend
import KeyVault
import MetaStore
import SnapExport
#if canImport(Glibc)
import Glibc
#endif

/// An error as the user sees it: one line, an optional hint, an exit code.
struct UserFacingError: Error {
    var message: String
    var hint: String?
    var exitCode: Int32

    init(_ message: String, hint: String? = nil, exitCode: Int32) {
        self.message = message
        self.hint = hint
        self.exitCode = exitCode
    }

    /// Maps any error from the modules below to a message and exit code.
    static func from(_ error: any Error) -> UserFacingError {
        switch error {
        case let e as UserFacingError: return e
        case let e as KeyVaultError:
            switch e {
            case .unwrapDenied, .passphraseRequired: return .init(e.description, exitCode: ExitCodes.wrongKey)
            case .keyFileUnavailable, .providerMismatch, .unsupported: return .init(e.description, exitCode: ExitCodes.badConfig)
            case .malformedEnvelope, .malformedKMIP: return .init(e.description, exitCode: ExitCodes.corruptOrUnsupported)
            case .unreachable: return .init(e.description, exitCode: ExitCodes.kmsUnreachable)
            case .kmsError, .crypto, .credentialsRejected, .permissionDenied: return .init(e.description, exitCode: ExitCodes.wrongKey)
            case .tls, .keyNotFound, .keyNotUsable: return .init(e.description, exitCode: ExitCodes.badConfig)
            }
        case let e as MetaStoreError:
            switch e {
            case .rowsReplaced:
                return .init(e.description, hint: "if you restored an older copy of the store on purpose, mount it with --accept-rollback", exitCode: ExitCodes.corruptOrUnsupported)
            case .superblock, .corruptRecord, .tampered, .untrustedMetadata, .database: return .init(e.description, hint: "run 'kmsfs fs list' to see the store path; restore it from a snapshot export if it is damaged", exitCode: ExitCodes.corruptOrUnsupported)
            case .storeNotFound: return .init(e.description, hint: "'kmsfs fs list' shows the filesystems in this home", exitCode: ExitCodes.notFound)
            case .storeExists: return .init(e.description, exitCode: ExitCodes.usage)
            case .io, .commitFailed: return .init(e.description, exitCode: ExitCodes.io)
            case .posix(let code): return .init(String(cString: strerror(code)), exitCode: ExitCodes.io)
            }
        case let e as SnapshotError:
            switch e {
            case .notFound: return .init(e.description, hint: "'kmsfs snapshot list' shows them", exitCode: ExitCodes.notFound)
            case .exists, .deleting: return .init(e.description, exitCode: ExitCodes.usage)
            case .mounted: return .init(e.description, exitCode: ExitCodes.mountFailed)
            }
        case let e as BundleError:
            switch e {
            case .corrupt, .unsupported: return .init(e.description, exitCode: ExitCodes.corruptOrUnsupported)
            case .missing: return .init(e.description, exitCode: ExitCodes.notFound)
            case .io: return .init(e.description, exitCode: ExitCodes.io)
            case .store: return .init(e.description, exitCode: ExitCodes.kmsUnreachable)
            case .mismatch: return .init(e.description, exitCode: ExitCodes.wrongKey)
            case .usage: return .init(e.description, exitCode: ExitCodes.usage)
            case .interrupted: return .init(e.description, exitCode: ExitCodes.interrupted)
            }
        case let e as FuseSession.MountError: return .init(e.description, exitCode: ExitCodes.mountFailed)
        default: return .init("internal error: \(error), please report", exitCode: ExitCodes.internalError)
        }
    }

    func printToStderr() {
        var text = "kmsfs: error: \(message)\n"
        if let hint { text += "kmsfs: hint: \(hint)\n" }
        writeStderr(text)
    }
}

func writeStderr(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

/// Rows as aligned columns (the first row is the header), two spaces apart.
func writeTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    let widths = first.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
    for row in rows {
        writeStdout(zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ") + "\n")
    }
}

/// A JSON value for scripts (`--json`), pretty-printed with sorted keys, on one stdout write.
func writeJSON(_ value: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    writeStdout(String(decoding: data, as: UTF8.self) + "\n")
}

func writeStdout(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
}

/// Runs a command body, turning failures into one-line errors and exit codes.
/// `onFailure` sees the error first (the mount daemon reports it to its parent).
func userErrors(onFailure: (UserFacingError) -> Void = { _ in }, _ body: () throws -> Void) throws {
    do { try body() } catch let e as ExitCode { throw e } catch let e as CleanExit { throw e } catch let e as ValidationError { throw e } catch {
        let user = UserFacingError.from(error)
        user.printToStderr()
        onFailure(user)
        throw ExitCode(user.exitCode)
    }
}

/// Stable exit codes (sysexits style), listed in docs/CLI.md. Never reuse a number.
enum ExitCodes {
    static let ok: Int32 = 0
    static let usage: Int32 = 64
    static let corruptOrUnsupported: Int32 = 65
    static let notFound: Int32 = 66
    static let kmsUnreachable: Int32 = 69
    static let internalError: Int32 = 70
    static let mountFailed: Int32 = 71
    static let io: Int32 = 74
    static let kmsThrottled: Int32 = 75
    static let wrongKey: Int32 = 77
    static let badConfig: Int32 = 78
    /// SIGINT/SIGTERM stopped an import (128 + SIGINT, as shells report it).
    static let interrupted: Int32 = 130
}

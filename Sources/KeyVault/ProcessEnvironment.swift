import Foundation
import Locking

/// The environment as kmsfs reads it: the process's own variables, plus the
/// secret ones a parent handed over a pipe. The mount daemon lives for the
/// whole mount; its /proc/<pid>/environ is readable by its uid (and root),
/// so secrets never reach it through the environment (see `DaemonLaunch`).
public enum ProcessEnvironment {
    /// Variables that carry a secret: never passed to a child's environment.
    public static let secretNames: Set<String> = [
        "KMSFS_PASSPHRASE", "VAULT_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    ]

    private static let handedOver = Locked<[String: String]>([:])

    /// The process environment with the handed-over secrets on top.
    public static var current: [String: String] {
        ProcessInfo.processInfo.environment.merging(handedOver.withLock { $0 }) { $1 }
    }

    /// Installs the secrets a parent sent (only names in `secretNames`).
    public static func install(_ secrets: [String: String]) {
        handedOver.withLock { $0.merge(secrets.filter { secretNames.contains($0.key) }) { $1 } }
    }
}

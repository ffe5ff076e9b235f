import Foundation
import KeyVault
import Locking
#if canImport(Glibc)
import Glibc
#endif

/// Keeps a mounted filesystem's Vault token alive: renews it (renew-self) when
/// half its TTL has passed, so a periodic token outlives any number of periods
/// while a filesystem is mounted (WEKA leaves this to the admin). Failures are
/// logged and retried; file I/O never waits for the KMS.
enum TokenRenewer {
    /// The token as last seen, for `kmsfs status` (nil until the renewer has looked).
    struct State: Sendable {
        var ttl: Int
        var checked: time_t
        var renewed: time_t?
        var failure: String?
    }
    static let state = Locked<State?>(nil)

    static func start(_ manager: VaultKeyManager, home: Home, filesystem: String) {
        let thread = Thread {
            var ttl: Int
            do {
                let info = try manager.tokenInfo()
                guard info.renewable, info.ttl > 0 else {
                    log(info.ttl == 0 ? "the vault token does not expire; no renewal needed" : "the vault token is not renewable; it expires in \(info.ttl) s")
                    return
                }
                ttl = info.ttl
                state.withLock { $0 = State(ttl: info.ttl, checked: time(nil)) }
            } catch {
                log("cannot look up the vault token: \(UserFacingError.from(error).message); retrying renewal in 30 s")
                ttl = 60
            }
            while true {
                sleep(UInt32(max(1, min(ttl / 2, 3600))))
                do {
                    ttl = try manager.renewToken()
                    log("renewed the vault token; ttl \(ttl) s")
                    let now = time(nil), renewedTTL = ttl
                    state.withLock { $0 = State(ttl: renewedTTL, checked: now, renewed: now) }
                } catch {
                    let reason = UserFacingError.from(error).message
                    log("vault token renewal failed: \(reason)")
                    AuditLog.record(home, "token-renewal-failed", ["filesystem": filesystem, "kms": "vault", "error": reason])
                    state.withLock { $0?.failure = "\(AuditLog.timestamp()) \(reason)" }
                    ttl = max(2, min(ttl / 2, 60))
                }
            }
        }
        thread.name = "kmsfs-token-renewer"
        thread.start()
    }

    private static func log(_ message: String) {
        writeStderr("\(AuditLog.timestamp()) kmsfs: \(message)\n")
    }
}

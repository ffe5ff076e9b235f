import Foundation
import KeyVault
#if canImport(Glibc)
import Glibc
#endif

/// Keeps a mounted filesystem's Vault token alive: renews it (renew-self) when
/// half its TTL has passed, so a periodic token outlives any number of periods
/// while a filesystem is mounted (WEKA leaves this to the admin). Failures are
/// logged and retried; file I/O never waits for the KMS.
enum TokenRenewer {
    static func start(_ manager: VaultKeyManager) {
        let thread = Thread {
            var ttl: Int
            do {
                let info = try manager.tokenInfo()
                guard info.renewable, info.ttl > 0 else {
                    log(info.ttl == 0 ? "the vault token does not expire; no renewal needed" : "the vault token is not renewable; it expires in \(info.ttl) s")
                    return
                }
                ttl = info.ttl
            } catch {
                log("cannot look up the vault token: \(UserFacingError.from(error).message); retrying renewal in 30 s")
                ttl = 60
            }
            while true {
                sleep(UInt32(max(1, min(ttl / 2, 3600))))
                do {
                    ttl = try manager.renewToken()
                    log("renewed the vault token; ttl \(ttl) s")
                } catch {
                    log("vault token renewal failed: \(UserFacingError.from(error).message)")
                    ttl = max(2, min(ttl / 2, 60))
                }
            }
        }
        thread.name = "kmsfs-token-renewer"
        thread.start()
    }

    private static func log(_ message: String) {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        writeStderr("\(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) kmsfs: \(message)\n")
    }
}

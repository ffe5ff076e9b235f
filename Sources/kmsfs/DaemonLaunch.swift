import BlockCipher
import Foundation
import KeyVault
#if canImport(Glibc)
import Glibc
#endif

/// What the detached mount daemon gets from the `kmsfs mount` that starts it.
/// The daemon lives as long as the mount and its /proc/<pid>/environ stays
/// readable to its uid, so its environment is an allow-list of harmless
/// variables; the secrets it may need (a passphrase, AWS credentials) go
/// over its stdin pipe, once, and never into its environment or argv.
enum DaemonLaunch {
    /// Variables the daemon keeps (exact names, or prefixes ending in `_`).
    static let kept: Set<String> = [
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "XDG_DATA_HOME",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
        "http_proxy", "https_proxy", "no_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
        "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CA_BUNDLE",
        "ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS",
    ]
    static let keptPrefixes = ["LC_", "KMSFS_", "AWS_ENDPOINT_URL"]

    /// A crash of the daemon writes a symbolic backtrace to its log: no
    /// register values and no memory around them (they may hold key bytes).
    static let backtraceSettings = "enable=yes,interactive=no,color=no,registers=none,images=none,sanitize=yes"

    /// The daemon's environment: the allow-list of `parent`, no secret.
    static func environment(from parent: [String: String]) -> [String: String] {
        var out = parent.filter { name, _ in
            !ProcessEnvironment.secretNames.contains(name) && (kept.contains(name) || keptPrefixes.contains { name.hasPrefix($0) })
        }
        out["SWIFT_BACKTRACE"] = backtraceSettings
        out[MountCommand.daemonChildVariable] = "1"
        return out
    }

    /// The secret variables of `parent`, encoded for the daemon's stdin: one
    /// `NAME BASE64` line each, built in byte arrays that are wiped (the
    /// environment's own Strings cannot be).
    static func secrets(from parent: [String: String]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16 << 10)  // no reallocation, so no stray unwiped copy
        for name in ProcessEnvironment.secretNames.sorted() {
            guard let value = parent[name], !value.isEmpty else { continue }
            var raw = Array(value.utf8)
            var encoded = Base64.encode(raw)
            out += Array(name.utf8) + [0x20] + encoded + [0x0a]
            wipe(&raw)
            wipe(&encoded)
        }
        return out
    }

    /// In the daemon: reads the secrets from stdin (to EOF, at most 64 KiB),
    /// installs them, and points stdin at /dev/null.
    static func receiveSecrets() {
        var bytes = SecretInput.readAll(0) ?? []
        var secrets: [String: String] = [:]
        for line in bytes.split(separator: 0x0a) {
            let parts = line.split(separator: 0x20, maxSplits: 1)
            guard parts.count == 2, var value = Base64.decode(parts[1]) else { continue }
            // The consumers (AWS signing, the passphrase reader) take Strings: that copy stays.
            secrets[String(decoding: parts[0], as: UTF8.self)] = String(decoding: value, as: UTF8.self)
            wipe(&value)
        }
        wipe(&bytes)
        ProcessEnvironment.install(secrets)
        let null = open("/dev/null", O_RDONLY)
        if null >= 0 {
            dup2(null, 0)
            close(null)
        }
    }
}

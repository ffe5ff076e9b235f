import Foundation
import KeyVault
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// The kmsfs home: filesystems, the local key, the KMS configuration, logs.
/// `--home`, else $KMSFS_HOME, else /var/lib/kmsfs for root, else the XDG data dir.
struct Home {
    let path: String

    static func resolve(_ option: String?) -> Home {
        if let option, !option.isEmpty { return Home(path: absolute(option)) }
        let env = ProcessInfo.processInfo.environment
        if let h = env["KMSFS_HOME"], !h.isEmpty { return Home(path: absolute(h)) }
        if getuid() == 0 { return Home(path: "/var/lib/kmsfs") }
        let data = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((env["HOME"] ?? "/tmp") + "/.local/share")
        return Home(path: data + "/kmsfs")
    }

    /// The path with symlinks resolved (itself if it does not exist).
    static func canonical(_ p: String) -> String {
        guard let resolved = realpath(p, nil) else { return p }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func absolute(_ p: String) -> String {
        p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
    }

    /// A mount point as the mount table writes it: absolute, symlinks resolved,
    /// no `.`, `..`, `//` or trailing slash (a dead FUSE mount cannot be
    /// resolved: then the path is only normalised).
    static func mountPath(_ p: String) -> String {
        let resolved = canonical(absolute(p))
        return resolved == "/" ? resolved : (resolved as NSString).standardizingPath
    }

    var filesystems: String { path + "/filesystems" }
    var localKey: String { path + "/local.key" }
    var kmsConfig: String { path + "/kms.json" }
    var logs: String { path + "/logs" }
    /// The last generation each filesystem with integrity was seen at, by UUID
    /// (docs/FORMAT.md "Rollback anchors"): outside the stores on purpose.
    var anchors: String { path + "/anchors" }

    func store(_ name: String) -> StorePaths { StorePaths(root: filesystems + "/" + name) }

    /// Creates the home (0700) and its subdirectories.
    func ensure() throws {
        for dir in [path, filesystems, logs, anchors] {
            guard mkdir(dir, 0o700) == 0 || errno == EEXIST else {
                throw UserFacingError("cannot create \(dir): \(String(cString: strerror(errno)))", exitCode: ExitCodes.io)
            }
        }
    }

    /// Creates the local key file (0600) if it does not exist yet.
    func ensureLocalKey() throws {
        try ensure()
        if !FileManager.default.fileExists(atPath: localKey) { try LocalKeyManager.createKeyFile(localKey) }
    }

    /// Names of the filesystems in this home, sorted.
    func filesystemNames() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: filesystems)) ?? [])
            .filter { FileManager.default.fileExists(atPath: store($0).superblock) }
            .sorted()
    }

    /// Checks a filesystem name: a safe single path component.
    static func validateName(_ name: String) throws {
        guard ComponentName.isValid(name) else {
            throw UserFacingError("invalid filesystem name '\(name)': \(ComponentName.rule)", exitCode: ExitCodes.usage)
        }
    }
}

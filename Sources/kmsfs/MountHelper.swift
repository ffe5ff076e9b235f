/// Translates mount(8)'s helper call `mount.kmsfs <name> <dir> [-sfnv] [-o opts]`
/// into `kmsfs mount` arguments. kmsfs options: home=PATH, passphrase_file=PATH,
/// metrics=PATH, readahead=KIB, ro, allow_other, nowriteback, suid, dev (kmsfs mounts nosuid,nodev otherwise); generic ones (defaults, noauto, nofail, _netdev, x-*...) are ignored.
enum MountHelper {
    struct BadOption: Error, CustomStringConvertible {
        let option: String
        var description: String { "unknown mount option '\(option)'" }
    }

    static let ignored: Set<String> = ["defaults", "rw", "auto", "noauto", "user", "nouser", "users", "nofail", "_netdev",
                                       "exec", "noexec", "nosuid", "nodev", "atime", "noatime", "relatime", "async", "sync"]

    static func translate(_ args: [String]) throws -> [String] {
        var positional = [String]()
        var options = [String]()
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "-o", i + 1 < args.count {
                options += args[i + 1].split(separator: ",").map(String.init)
                i += 2
                continue
            }
            if a.hasPrefix("-o") && a.count > 2 { options += a.dropFirst(2).split(separator: ",").map(String.init) } else if !a.hasPrefix("-") { positional.append(a) }
            i += 1
        }
        guard positional.count == 2 else { throw BadOption(option: "expected <name> <mountpoint>, got \(positional)") }
        // mount(8) must be idempotent (`mount -a` again while mounted): the helper says so, and exits 0.
        var out = ["mount", positional[0], positional[1], "--if-not-mounted"]
        for option in options {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            switch parts[0] {
            case "home" where parts.count == 2: out += ["--home", parts[1]]
            case "passphrase_file" where parts.count == 2: out += ["--passphrase-file", parts[1]]
            case "metrics" where parts.count == 2: out += ["--metrics", parts[1]]
            case "readahead" where parts.count == 2: out += ["--readahead", parts[1]]
            case "ro": out.append("--read-only")
            case "allow_other": out.append("--allow-other")
            case "nowriteback": out.append("--no-writeback")
            case "suid": out.append("--suid")
            case "dev": out.append("--dev")
            case let o where ignored.contains(o) || o.hasPrefix("x-") || o.hasPrefix("comment="): continue
            default: throw BadOption(option: option)
            }
        }
        return out
    }
}

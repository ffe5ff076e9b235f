import Foundation
import Testing

/// An unprivileged FUSE mount opens /dev/fuse itself (Debian's default mode
/// is 0666; this machine's may be 0600): opened to all while any test needs it.
enum FuseDevice {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var users = 0
    nonisolated(unsafe) private static var savedMode: mode_t = 0o600

    static func openToAll(_ body: () throws -> Void) throws {
        lock.withLock {
            if users == 0 {
                var st = stat()
                if stat("/dev/fuse", &st) == 0 { savedMode = st.st_mode & 0o7777 }
                chmod("/dev/fuse", 0o666)
            }
            users += 1
        }
        defer {
            lock.withLock {
                users -= 1
                if users == 0 { chmod("/dev/fuse", savedMode) }
            }
        }
        try body()
    }
}

/// The mount daemon holds the working keys for as long as the mount lives:
/// its environment, memory and crash output must give nothing away, even to
/// processes of its own uid, and no value a metadata row holds may crash it.
@Suite(.serialized) struct DaemonHygieneTests {
    static let secrets = [
        "KMSFS_PASSPHRASE": "correct horse battery staple 42", "VAULT_TOKEN": "s.vaultTokenValue1234",
        "AWS_ACCESS_KEY_ID": "AKIDHARDENINGTEST01", "AWS_SECRET_ACCESS_KEY": "awsSecretAccessKeyValue5678",
        "AWS_SESSION_TOKEN": "awsSessionTokenValue9012", "MY_API_TOKEN": "someOtherShellSecret3456",
    ]

    /// Runs kmsfs as nobody with `env` (runuser keeps the caller's environment).
    func kmsfsAsNobody(_ args: [String], env: [String: String]) throws -> Harness.Result {
        try Harness.run("/usr/sbin/runuser", ["-u", "nobody", "--", Harness.binary] + args, env: env)
    }

    @Test func daemonEnvironmentAndMemoryAreClosedEvenToItsOwnUser() throws {
        guard Harness.fuseAvailable() else { return }
        try FuseDevice.openToAll {
        let box = try Sandbox()
        chmod(box.root, 0o755)
        let home = try box.directory("nobody-home"), mnt = try box.directory("nobody-mnt")
        #expect(chown(home, 65534, 65534) == 0 && chown(mnt, 65534, 65534) == 0)
        var env = Self.secrets
        env["KMSFS_HOME"] = home
        let created = try kmsfsAsNobody(["fs", "create", "p"], env: env)
        try #require(created.status == 0, "fs create: \(created.stderr)")
        let mounted = try kmsfsAsNobody(["mount", "p", mnt], env: env)
        try #require(mounted.status == 0, "mount (the passphrase reaches the daemon over its pipe): \(mounted.stderr)")
        defer { _ = try? kmsfsAsNobody(["umount", mnt], env: ["KMSFS_HOME": home]) }
        let pid = try #require((try String(contentsOfFile: home + "/filesystems/p/lock", encoding: .utf8)).split(separator: "\n").first.flatMap { Int32($0) })

        let environ = try String(decoding: Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")), as: UTF8.self)
        for (name, value) in Self.secrets {
            #expect(!environ.contains(value), "\(name) is in the daemon's environment")
        }
        #expect(environ.contains("SWIFT_BACKTRACE=") && environ.contains("registers=none"))
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        #expect(limits.split(separator: "\n").contains { $0.hasPrefix("Max core file size") && $0.split(separator: " ").dropFirst(4).prefix(2) == ["0", "0"] },
                "\(limits)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd") == "/")
        // The same uid as the daemon, and still no way in.
        for file in ["environ", "mem", "maps"] {
            let r = try asNobody("cat /proc/\(pid)/\(file) > /dev/null")
            #expect(r.status != 0 && r.stderr.contains("Permission denied"), "nobody read /proc/\(pid)/\(file): \(r.stderr)")
        }
        let attach = try asNobody("python3 -c 'import ctypes,sys; l=ctypes.CDLL(None); sys.exit(0 if l.ptrace(16, \(pid), 0, 0) == 0 else 1)'")
        #expect(attach.status == 1, "nobody could ptrace-attach to its daemon")
        #expect(try asNobody("echo ok > \(mnt)/f && cat \(mnt)/f").stdout == "ok\n", "the mount itself works for its owner")
        }
    }

    @Test func aCrashedDaemonLogsASymbolicBacktraceOnly() throws {
        guard Harness.fuseAvailable() else { return }
        // Under scripts/sanitizers.sh the sanitizer's own SEGV handler replaces Swift's backtracer
        // (it prints a stack, no registers); scripts/test.sh runs this test on the normal build.
        if let sanitizer = ProcessInfo.processInfo.environment["KMSFS_SANITIZER"] {
            print("SKIP under the \(sanitizer) sanitizer: its handler replaces the Swift backtracer")
            return
        }
        let box = try Sandbox()
        try box.create()
        try box.mount()
        let pid = try #require(box.daemonPID())
        kill(pid, SIGSEGV)
        // The backtracer writes to the log and ends with this line (the daemon itself may live on:
        // a signal sent from outside does not fault again when the handler returns).
        let logPath = box.home + "/logs/demo.log"
        // (Up to 30 s: symbolicating takes seconds when the rest of the suite loads both cores.)
        for _ in 0..<300 where !((try? String(contentsOfFile: logPath, encoding: .utf8))?.contains("Backtrace took") ?? false) { usleep(100_000) }
        kill(pid, SIGKILL)
        let log = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(log.contains("crashed"), "the backtracer ran: \(log.suffix(400))")
        #expect(!log.contains("Registers:") && !log.contains("rsp 0x") && !log.contains("Images ("), "register and memory dumps in the log: \(log.suffix(1500))")
        #expect(!FileManager.default.fileExists(atPath: "/core") && !FileManager.default.fileExists(atPath: "/core.\(pid)"), "a core file")
    }

    @Test func hostileAttributeValuesAreEIONotACrash() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.demoWithImpossibleSize(files: ["bystander": "still here\n"])
        try box.mount()
        var st = stat()
        #expect(stat(box.mountpoint + "/victim", &st) != 0 && errno == EIO, "stat of the edited inode: errno \(errno)")
        #expect(try box.read("bystander") == "still here\n", "the daemon is alive and serves the rest")
        try box.umount()
    }
}

import Foundation
import Testing

/// Runs the built kmsfs binary and mounts for real through /dev/fuse.
/// Outside CI a missing /dev/fuse or root skips with a printed reason; with
/// CI=true the same condition fails the test (the CI script also counts that
/// the FUSE tests ran).
enum Harness {
    static var binary: String {
        if let b = ProcessInfo.processInfo.environment["KMSFS_BIN"] { return b }
        let dir = (CommandLine.arguments[0] as NSString).deletingLastPathComponent
        for candidate in [dir + "/kmsfs", dir + "/../kmsfs", dir + "/../../kmsfs"] where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/kmsfs"
    }

    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Whether FUSE mounts can run here; records a failure in CI when not.
    static func fuseAvailable() -> Bool {
        var reason: String?
        if !FileManager.default.fileExists(atPath: "/dev/fuse") { reason = "/dev/fuse is missing" }
        else if getuid() != 0 { reason = "FUSE tests need root (allow_other, tmpfs, mknod)" }
        else if !FileManager.default.fileExists(atPath: "/bin/fusermount3") && !FileManager.default.fileExists(atPath: "/usr/bin/fusermount3") { reason = "fusermount3 is missing (apt-get install fuse3)" }
        guard let reason else {
            // Leave a marker so scripts/test.sh can prove the FUSE tests ran.
            if let dir = ProcessInfo.processInfo.environment["KMSFS_TEST_MARKERS"], let name = Test.current?.name {
                _ = FileManager.default.createFile(atPath: dir + "/" + name.filter { $0.isLetter || $0.isNumber }, contents: Data())
            }
            return true
        }
        if isCI { Issue.record("FUSE test cannot run in CI: \(reason)") } else { print("SKIP FUSE test: \(reason)") }
        return false
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    @discardableResult
    static func run(_ executable: String, _ args: [String], env: [String: String] = [:], input: String? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "KMSFS_PASSPHRASE")
        for (k, v) in env { environment[k] = v.isEmpty ? nil : v }  // "" unsets
        p.environment = environment
        // Files, not pipes: a daemon that inherits them cannot block us.
        let base = NSTemporaryDirectory() + "kmsfs-run-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: base + ".out", contents: nil)
        _ = FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        p.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        p.standardError = FileHandle(forWritingAtPath: base + ".err")
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let outData = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let errData = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    static func shell(_ script: String, env: [String: String] = [:]) throws -> Result {
        try run("/bin/bash", ["-c", script], env: env)
    }

    /// Starts a process in the background (stdout to `output`, else discarded; stderr discarded).
    static func launch(_ executable: String, _ args: [String], output: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        if let output { _ = FileManager.default.createFile(atPath: output, contents: nil) }
        p.standardOutput = output.flatMap { FileHandle(forWritingAtPath: $0) } ?? FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// A JSON object printed by a command (`--json`), empty if it is not one.
    static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }
}

/// A private kmsfs home and mount point, unmounted and removed at the end.
final class Sandbox {
    let root: String
    let home: String
    let mountpoint: String
    /// Extra environment for every kmsfs command of this sandbox (e.g. AWS credentials).
    var env: [String: String] = [:]

    init() throws {
        root = NSTemporaryDirectory() + "kmsfs-it-\(UUID().uuidString.prefix(8))"
        home = root + "/home"
        mountpoint = root + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
    }

    deinit {
        for entry in (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.split(separator: "\n") ?? [] {
            let fields = entry.split(separator: " ")
            if fields.count > 4, fields[4].hasPrefix(root) {
                _ = try? Harness.run("/bin/fusermount3", ["-u", "-z", String(fields[4])])
                _ = try? Harness.run("/bin/umount", ["-l", String(fields[4])])
            }
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    @discardableResult
    func kmsfs(_ args: String..., env: [String: String] = [:]) throws -> Harness.Result {
        try kmsfs(args, env: env)
    }

    @discardableResult
    func kmsfs(_ args: [String], env: [String: String] = [:]) throws -> Harness.Result {
        try Harness.run(Harness.binary, args, env: ["KMSFS_HOME": home].merging(self.env) { $1 }.merging(env) { $1 })
    }

    func create(_ name: String = "demo", integrity: Bool = true) throws {
        let r = try kmsfs(["fs", "create", name] + (integrity ? [] : ["--no-integrity"]))
        #expect(r.status == 0, "fs create: \(r.stderr)")
    }

    func mount(_ name: String = "demo", _ extra: [String] = []) throws {
        let r = try kmsfs(["mount", name, mountpoint] + extra)
        try #require(r.status == 0, "mount: \(r.stderr)")
    }

    func umount() throws {
        let r = try kmsfs("umount", mountpoint)
        #expect(r.status == 0, "umount: \(r.stderr)")
    }

    var store: String { home + "/filesystems/demo" }

    /// The key a filesystem's superblock names, as `fs list --json` shows it.
    func keyOf(_ name: String = "demo") throws -> String {
        let r = try kmsfs("fs", "list", "--json")
        let rows = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: String]] ?? []
        return rows.first { $0["name"] == name }?["key"] ?? ""
    }

    /// The pid recorded by the mount daemon in the store's lock file.
    func daemonPID(_ name: String = "demo") -> Int32? {
        (try? String(contentsOfFile: home + "/filesystems/\(name)/lock", encoding: .utf8)).flatMap { $0.split(separator: "\n").first.flatMap { Int32($0) } }
    }

    /// Lets `worker` run for 0.2 s plus up to `jitter` more, then kills the
    /// mount daemon and the worker with SIGKILL (SIGTERM can be blocked in
    /// processes Foundation spawns) and clears the dead mount.
    func killDaemon(during worker: Process, jitter: Int = 1_000_000) throws {
        usleep(useconds_t(200_000 + Int.random(in: 0..<jitter)))
        let pid = try #require(daemonPID())
        #expect(kill(pid, SIGKILL) == 0)
        kill(worker.processIdentifier, SIGKILL)
        worker.waitUntilExit()
        _ = try Harness.run("/bin/fusermount3", ["-u", "-z", mountpoint])
        usleep(300_000)
    }

    /// A new directory under the sandbox (extra mount points, bundles).
    func directory(_ name: String) throws -> String {
        let path = root + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Mounts snapshot `snapshot` of `filesystem` read-only at `dir`.
    func mountSnapshot(_ snapshot: String, at dir: String, of filesystem: String = "demo") throws {
        let r = try kmsfs("snapshot", "mount", filesystem, snapshot, dir)
        try #require(r.status == 0, "snapshot mount \(snapshot): \(r.stderr)")
    }

    /// Unmounts `dir` (a second mount of the sandbox).
    func umount(_ dir: String) throws {
        let r = try kmsfs("umount", dir)
        #expect(r.status == 0, "umount \(dir): \(r.stderr)")
    }

    func write(_ path: String, _ text: String) throws {
        try text.write(toFile: mountpoint + "/" + path, atomically: false, encoding: .utf8)
    }

    func read(_ path: String) throws -> String {
        try String(contentsOfFile: mountpoint + "/" + path, encoding: .utf8)
    }
}

/// The OpenBao server the Vault tests share, started once per test process by
/// Scripts/openbao.sh on 127.0.0.1 (TLS with its own CA) and stopped at exit.
/// Outside CI a server that cannot start skips the Vault tests with a printed
/// reason; with CI=true it fails them, and scripts/test.sh counts that they ran.
final class OpenBao: @unchecked Sendable {
    let dir: String
    let env: [String: String]
    var address: String { env["BAO_ADDR"]! }
    var caCert: String { env["BAO_CACERT"]! }
    var rootToken: String { env["BAO_ROOT_TOKEN"]! }
    /// The periodic token of the seed's token role, with the restrictive policy.
    var token: String { env["BAO_TOKEN_KMSFS"]! }
    var pid: Int32 { Int32(env["BAO_PID"]!)! }

    private init(dir: String, env: [String: String]) {
        self.dir = dir
        self.env = env
    }

    private static let started: Result<OpenBao, Error> = ScriptServer.start("openbao.sh").map { OpenBao(dir: $0.dir, env: $0.env) }

    /// The shared server, or nil (and a CI failure) when it cannot run here.
    static func available() -> OpenBao? { ScriptServer.available(started, marker: "bao") }

    /// A server of the test's own (another KMS, e.g. at a second site), which
    /// it may freeze without disturbing the tests that share the first one.
    static func dedicated(_ label: String) throws -> OpenBao {
        let started = try ScriptServer.start("openbao.sh", instance: label).get()
        return OpenBao(dir: started.dir, env: started.env)
    }

    /// Runs the bao CLI as root (admin steps: rotate a key, make tokens).
    @discardableResult
    func bao(_ args: String..., token: String? = nil, namespace: String = "") throws -> Harness.Result {
        try Harness.run(env["BAO_BIN"]!, args, env: ["BAO_ADDR": address, "BAO_CACERT": caCert, "BAO_TOKEN": token ?? rootToken,
                                                     "BAO_NAMESPACE": namespace])
    }

    /// A new token from a role with the given period, e.g. "6s".
    func periodicToken(period: String, role: String) throws -> String {
        try bao("write", "auth/token/roles/\(role)", "allowed_policies=kmsfs", "period=\(period)")
        let r = try bao("token", "create", "-role=\(role)", "-field=token")
        guard r.status == 0 else { throw HarnessError("token create: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Stops (SIGSTOP) the server for the duration of `body`: it is "down" (requests time out).
    func whileFrozen<T>(_ body: () throws -> T) rethrows -> T {
        kill(pid, SIGSTOP)
        defer { kill(pid, SIGCONT) }
        return try body()
    }
}

/// A test server started by a script in Scripts/ ("start DIR" writes DIR/env
/// as KEY=VALUE lines), stopped by "stop DIR" when the test process exits. A
/// test process that dies without exiting (a crash, SIGKILL, Ctrl-C) cannot run
/// that stop: the script's watchdog (Scripts/watchdog.sh) then ends the server,
/// since this process is its owner (KMSFS_SERVER_OWNER).
enum ScriptServer {
    nonisolated(unsafe) private static var running: [(script: String, dir: String)] = []
    private static let lock = NSLock()

    static func start(_ script: String, instance: String = "") -> Result<(dir: String, env: [String: String]), Error> {
        Result {
            let dir = NSTemporaryDirectory() + "kmsfs-\(script.prefix { $0 != "." })-\(getpid())" + (instance.isEmpty ? "" : "-" + instance)
            register(script, dir)  // before the start: stopping a server that never started is a no-op
            let r = try Harness.run("/bin/bash", [scriptPath(script), "start", dir], env: ["KMSFS_SERVER_OWNER": String(getpid())])
            guard r.status == 0, let text = try? String(contentsOfFile: dir + "/env", encoding: .utf8) else {
                throw HarnessError("\(script) start failed: \(r.stderr.suffix(400))")
            }
            var env: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { env[String(parts[0])] = String(parts[1]) }
            }
            return (dir, env)
        }
    }

    private static func scriptPath(_ script: String) -> String { Harness.packageRoot + "/Tests/IntegrationTests/Scripts/" + script }

    /// Adds a server to those stopped at exit (the first one installs the atexit handler).
    private static func register(_ script: String, _ dir: String) {
        lock.lock()
        defer { lock.unlock() }
        if running.isEmpty {
            atexit {
                for (script, dir) in ScriptServer.running {
                    _ = try? Harness.run("/bin/bash", [ScriptServer.scriptPath(script), "stop", dir])
                    try? FileManager.default.removeItem(atPath: dir)
                }
            }
        }
        running.append((script, dir))
    }

    /// The server if it started (leaving a marker that scripts/test.sh counts), else
    /// nil: a printed skip outside CI, a recorded failure in CI.
    static func available<T>(_ started: Result<T, Error>, marker: String) -> T? {
        switch started {
        case .success(let server):
            if let dir = ProcessInfo.processInfo.environment["KMSFS_TEST_MARKERS"], let name = Test.current?.name {
                _ = FileManager.default.createFile(atPath: dir + "/\(marker)-" + name.filter { $0.isLetter || $0.isNumber }, contents: Data())
            }
            return server
        case .failure(let error):
            if Harness.isCI { Issue.record("\(marker) test cannot run in CI: \(error)") } else { print("SKIP \(marker) test: \(error)") }
            return nil
        }
    }
}

/// moto on 127.0.0.1 with SigV4 checking on (Scripts/moto.sh): AWS KMS and S3.
final class Moto: @unchecked Sendable {
    let dir: String
    let env: [String: String]
    var endpoint: String { env["MOTO_ENDPOINT"]! }
    var keyARN: String { env["MOTO_KEY_ARN"]! }
    /// Environment with the allowed user's credentials, as a user's shell would have.
    var credentials: [String: String] {
        ["AWS_ACCESS_KEY_ID": env["MOTO_ACCESS_KEY_ID"]!, "AWS_SECRET_ACCESS_KEY": env["MOTO_SECRET_ACCESS_KEY"]!,
         "AWS_REGION": "us-east-1", "AWS_PROFILE": "", "AWS_SESSION_TOKEN": ""]
    }

    private init(dir: String, env: [String: String]) {
        self.dir = dir
        self.env = env
    }

    private static let started: Result<Moto, Error> = ScriptServer.start("moto.sh").map { Moto(dir: $0.dir, env: $0.env) }

    static func available() -> Moto? { ScriptServer.available(started, marker: "moto") }

    /// An admin step through boto3 (Scripts/moto_admin.py); returns its stdout.
    @discardableResult
    func admin(_ args: String...) throws -> String {
        let r = try Harness.run(env["MOTO_PYTHON"]!, [Harness.packageRoot + "/Tests/IntegrationTests/Scripts/moto_admin.py", endpoint] + args,
                                env: credentials)
        guard r.status == 0 else { throw HarnessError("moto_admin \(args): \(r.stderr.suffix(300))") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// SeaweedFS's S3 server on 127.0.0.1 (Scripts/seaweedfs.sh): a real S3
/// implementation besides moto, with a read-write and a read-only identity.
final class SeaweedFS: @unchecked Sendable {
    let dir: String
    let env: [String: String]
    var endpoint: String { env["SEAWEED_ENDPOINT"]! }
    var bucket: String { env["SEAWEED_BUCKET"]! }
    var credentials: [String: String] { Self.aws(env["SEAWEED_ACCESS_KEY_ID"]!, env["SEAWEED_SECRET_ACCESS_KEY"]!) }
    var readOnlyCredentials: [String: String] { Self.aws(env["SEAWEED_READONLY_ACCESS_KEY_ID"]!, env["SEAWEED_READONLY_SECRET_ACCESS_KEY"]!) }

    static func aws(_ key: String, _ secret: String) -> [String: String] {
        ["AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_REGION": "us-east-1", "AWS_PROFILE": "", "AWS_SESSION_TOKEN": ""]
    }

    private init(dir: String, env: [String: String]) {
        self.dir = dir
        self.env = env
    }

    private static let started: Result<SeaweedFS, Error> = ScriptServer.start("seaweedfs.sh").map { SeaweedFS(dir: $0.dir, env: $0.env) }

    static func available() -> SeaweedFS? { ScriptServer.available(started, marker: "seaweed") }
}

/// PyKMIP's server on 127.0.0.1 with mutual TLS (Scripts/pykmip.sh).
final class PyKMIP: @unchecked Sendable {
    let dir: String
    let env: [String: String]
    var address: String { "\(env["KMIP_HOST"]!):\(env["KMIP_PORT"]!)" }
    /// `--client-cert C --client-key K --ca-cert CA` for the good client.
    var tlsArguments: [String] { ["--client-cert", env["KMIP_CLIENT_CERT"]!, "--client-key", env["KMIP_CLIENT_KEY"]!, "--ca-cert", env["KMIP_CA"]!] }

    private init(dir: String, env: [String: String]) {
        self.dir = dir
        self.env = env
    }

    private static let started: Result<PyKMIP, Error> = ScriptServer.start("pykmip.sh").map { PyKMIP(dir: $0.dir, env: $0.env) }

    static func available() -> PyKMIP? { ScriptServer.available(started, marker: "kmip") }

    /// An admin step with PyKMIP's own client (Scripts/kmip_admin.py); returns its stdout.
    @discardableResult
    func admin(_ args: String...) throws -> String {
        let r = try Harness.run(env["KMIP_PYTHON"]!, [Harness.packageRoot + "/Tests/IntegrationTests/Scripts/kmip_admin.py", dir + "/env"] + args,
                                env: ["PYTHONWARNINGS": "ignore"])
        guard r.status == 0 else { throw HarnessError("kmip_admin \(args): \(r.stderr.suffix(300))") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

internal import CFuse
internal import CLinux
import MetaStore
#if canImport(Glibc)
import Glibc
#endif

/// A mounted libfuse3 low-level session (fuse_session_new + fuse_session_mount),
/// served by a multi-threaded loop. Owns the session handle and tears down in
/// reverse order: unmount, signal handlers, destroy.
public final class FuseSession {
    /// Options of one mount.
    public struct Options: Sendable {
        public var fsName: String
        public var readOnly = false
        public var allowOther = false
        /// Honour setuid/setgid bits and device nodes. Off by default (nosuid,
        /// nodev, as gocryptfs does): whoever can write the store or author a
        /// bundle could otherwise plant a setuid-root binary or a device node.
        public var allowSetuid = false
        public var allowDevices = false
        public var writebackCache = true
        public var maxThreads: UInt32 = 16
        public var debug = false

        public init(fsName: String) { self.fsName = fsName }
    }

    /// Errors while mounting.
    public enum MountError: Error, CustomStringConvertible {
        case sessionCreate
        case mount(mountpoint: String)

        public var description: String {
            switch self {
            case .sessionCreate: return "libfuse could not create a session (is /dev/fuse available?)"
            case .mount(let m): return "mounting on \(m) failed (see the libfuse message above; is fuse3 installed and the mount point a directory?)"
            }
        }
    }

    let context: SessionContext
    private let session: OpaquePointer
    private let mountpoint: String
    private var mounted = false
    private var signalHandlers = false
    private var destroyed = false

    /// Creates the session and mounts it on `mountpoint`.
    public init(fileSystem: FileSystem, mountpoint: String, options: Options) throws {
        context = SessionContext(fileSystem: fileSystem, wantWriteback: options.writebackCache)
        self.mountpoint = mountpoint
        var mountOptions = ["fsname=\(options.fsName)", "subtype=kmsfs", "default_permissions", "noatime"]
        if options.readOnly { mountOptions.append("ro") }
        if options.allowOther { mountOptions.append("allow_other") }
        mountOptions.append(options.allowSetuid ? "suid" : "nosuid")
        mountOptions.append(options.allowDevices ? "dev" : "nodev")
        var argv = ["kmsfs", "-o", mountOptions.joined(separator: ",")]
        if options.debug { argv.append("-d") }
        let cArgs = argv.map { strdup($0) }
        defer { cArgs.forEach { free($0) } }
        var cArgv: [UnsafeMutablePointer<CChar>?] = cArgs + [nil]
        // fuse_session_new copies the table, so a local is enough.
        var ops = Trampolines.operations()
        let userdata = Unmanaged.passUnretained(context).toOpaque()
        let created: OpaquePointer? = cArgv.withUnsafeMutableBufferPointer { buffer in
            var args = CFuse_args_init(Int32(argv.count), buffer.baseAddress)
            defer { fuse_opt_free_args(&args) }
            return fuse_session_new(&args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
        }
        guard let created else { throw MountError.sessionCreate }
        session = created
        // Every stored property is set from here on, so a throw still runs
        // deinit, which undoes exactly what was done (a second destroy here
        // was a double free when an unprivileged mount failed).
        guard fuse_session_mount(session, mountpoint) == 0 else { throw MountError.mount(mountpoint: mountpoint) }
        mounted = true
        guard fuse_set_signal_handlers(session) == 0 else { throw MountError.sessionCreate }
        signalHandlers = true
    }

    /// Whether the running kernel writes a file's dirty pages back at close
    /// even when the filesystem has no FLUSH op (Linux 5.14 and later).
    static let kernelWritesBackAtClose: Bool = {
        var name = utsname()
        guard uname(&name) == 0 else { return false }
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return false }
        return (numbers[0], numbers[1]) >= (5, 14)
    }()

    /// Serves requests until unmounted or signalled (SIGINT, SIGTERM, SIGHUP).
    /// Returns 0 on a clean exit.
    public func run(maxThreads: UInt32 = 16) -> Int32 {
        clinux_keep_io_buffers()  // no fresh zeroed pages per request
        let config = fuse_loop_cfg_create()
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, maxThreads)
        fuse_loop_cfg_set_clone_fd(config, 0)
        return CFuse_session_loop_mt(session, config)
    }

    /// Unmounts and destroys the session, which runs the destroy callback
    /// (the filesystem's last flush) now: a caller that must act after that
    /// flush (the rollback anchor) cannot rely on when deinit runs, nor on it
    /// running at all before the process exits.
    public func close() {
        guard !destroyed else { return }
        destroyed = true
        if signalHandlers { fuse_remove_signal_handlers(session) }
        if mounted { fuse_session_unmount(session) }
        fuse_session_destroy(session)
    }

    deinit { close() }
}

/// What the trampolines reach through the session's userdata pointer.
final class SessionContext: @unchecked Sendable {
    // @unchecked: `writeback` is written once in the init callback, before
    // the kernel sends any other request, and only read afterwards.
    let fileSystem: FileSystem
    let wantWriteback: Bool
    var writeback = false

    init(fileSystem: FileSystem, wantWriteback: Bool) {
        self.fileSystem = fileSystem
        self.wantWriteback = wantWriteback
    }
}

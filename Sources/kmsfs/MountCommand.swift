import ArgumentParser
import BlockCipher
import Foundation
import FuseFrontend
import KeyVault
import MetaStore
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// `kmsfs mount <name> <mountpoint>`: unwraps the key once, mounts, and
/// (unless --foreground) detaches, returning only when the mount is ready or failed.
struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount an encrypted filesystem (daemonizes; --foreground to stay attached)."
    )

    @OptionGroup var homeOptions: HomeOptions
    @Argument(help: "Name of the filesystem.") var name: String
    @Argument(help: "Directory to mount on.") var mountpoint: String
    @Flag(name: [.short, .long], help: "Stay in the foreground (logs to stderr).") var foreground = false
    @Flag(help: "Mount read-only.") var readOnly = false
    @Flag(help: "Let other users access the mount (root, or user_allow_other in /etc/fuse.conf).") var allowOther = false
    @Flag(help: "Disable the kernel writeback cache.") var noWriteback = false
    @Flag(help: "Honour setuid/setgid bits (mounts are nosuid otherwise).") var suid = false
    @Flag(help: "Honour device nodes (mounts are nodev otherwise).") var dev = false
    @Flag(help: "Print every FUSE request (libfuse -d).") var debug = false
    @Option(help: "Kernel readahead of the mount in KiB, 0 for the kernel's 128 (set by root only: other users' mounts keep 128).")
    var readahead = KernelReadahead.defaultKiB
    @Flag(help: "Mount a store older than the generation this home last saw, or with metadata rows put back from an older copy (after restoring one on purpose): anchor it there and seal its rows as they are.")
    var acceptRollback = false
    @Option(help: "Keep this file up to date with the mount's Prometheus metrics, every 5 s (for node_exporter's textfile collector).")
    var metrics: String?
    @Option(help: "Passphrase file, for a filesystem created with --passphrase-file ($KMSFS_PASSPHRASE also works).")
    var passphraseFile: String?
    /// Set by `kmsfs snapshot mount`: serve this snapshot read-only instead of the live filesystem.
    @Option(help: .hidden) var snapshot: String?
    /// Set by mount.kmsfs: a filesystem already mounted at this mount point is success, not an error.
    @Flag(help: .hidden) var ifNotMounted = false

    static let daemonChildVariable = "KMSFS_DAEMON_CHILD"

    func validate() throws {
        try Home.validateName(name)
        guard (0...KernelReadahead.maximumKiB).contains(readahead) else {
            throw ValidationError("--readahead must be between 0 and \(KernelReadahead.maximumKiB) KiB")
        }
    }

    func run() throws {
        let isChild = ProcessInfo.processInfo.environment[Self.daemonChildVariable] == "1"
        if isChild {
            DaemonLaunch.receiveSecrets()
            chdir("/")  // a daemon must not keep the caller's directory busy
        }
        try userErrors(onFailure: { if isChild { Daemon.report(.failure(code: $0.exitCode, message: $0.message)) } }) {
                let home = homeOptions.resolved
                let store = home.store(name)
                if ifNotMounted, snapshot == nil, MountTable.current().mountpoints(ofStore: store.root).contains(Home.mountPath(mountpoint)) {
                    writeStdout("\(name) is already mounted at \(Home.mountPath(mountpoint))\n")
                    return
                }
                let target = try checkMountpoint()
                guard FileManager.default.fileExists(atPath: store.superblock) else { throw MetaStoreError.storeNotFound(path: store.root) }
                if !isChild, snapshot == nil, let sb = try? SuperblockFile.read(store.superblock), !sb.hasIntegrity {
                    writeStderr("kmsfs: warning: filesystem \(name) has no integrity (XTS only): edits to its store are not detected\n")
                }
                if !foreground && !isChild {
                    try Daemon.spawnAndWait(arguments: childArguments(home: home), logPath: home.logs + "/\(name).log", home: home)
                    return
                }
                if let snapshot {
                    try serveSnapshot(snapshot, home: home, store: store, mountpoint: target, notify: isChild)
                } else {
                    try serve(home: home, store: store, mountpoint: target, notify: isChild)
                }
        }
    }

    /// The same mount, in the foreground, for the detached child (which may
    /// have been reached through mount.kmsfs with other argument syntax).
    func childArguments(home: Home) -> [String] {
        var args = ["kmsfs", "mount", "--home", home.path, name, Home.mountPath(mountpoint), "--foreground"]
        if readOnly { args.append("--read-only") }
        if allowOther { args.append("--allow-other") }
        if noWriteback { args.append("--no-writeback") }
        if suid { args.append("--suid") }
        if dev { args.append("--dev") }
        if debug { args.append("--debug") }
        if readahead != KernelReadahead.defaultKiB { args += ["--readahead", String(readahead)] }
        if acceptRollback { args.append("--accept-rollback") }
        if let metrics { args += ["--metrics", Home.absolute(metrics)] }
        if let passphraseFile { args += ["--passphrase-file", Home.absolute(passphraseFile)] }
        if let snapshot { args += ["--snapshot", snapshot] }
        return args
    }

    /// The mount point must exist, be a directory, and not be mounted already
    /// (a dead kmsfs mount left by a killed daemon is cleared).
    func checkMountpoint() throws -> String {
        let path = Home.mountPath(mountpoint)
        // The store lock records the mount point on a line of its own.
        guard !path.contains("\n") else { throw UserFacingError("a mount point may not contain a newline", exitCode: ExitCodes.usage) }
        let table = MountTable.current()
        if let existing = table.entry(at: path) {
            var st = stat()
            let dead = stat(path, &st) != 0 && errno == ENOTCONN
            guard dead && existing.fsType == "fuse.kmsfs" else {
                throw UserFacingError("mount point \(path) is busy: \(existing.source) (\(existing.fsType)) is mounted there", exitCode: ExitCodes.mountFailed)
            }
            Daemon.runQuietly("/bin/fusermount3", ["-u", "-z", path])
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw UserFacingError("mount point \(path) does not exist", hint: "mkdir -p \(path)", exitCode: ExitCodes.mountFailed)
        }
        guard isDir.boolValue else { throw UserFacingError("mount point \(path) is not a directory", exitCode: ExitCodes.mountFailed) }
        return path
    }

    /// Unlocks, mounts and serves until unmounted.
    func serve(home: Home, store: StorePaths, mountpoint: String, notify: Bool) throws {
        let mounted = MountTable.current().mountpoints(ofStore: store.root)
        guard mounted.isEmpty else {
            throw UserFacingError("filesystem \(name) is already mounted at \(mounted.joined(separator: ", "))", exitCode: ExitCodes.mountFailed)
        }
        // A daemon that was just unmounted may still be flushing: wait for it.
        guard let lock = StoreLock(path: store.root + "/lock", timeout: 10) else {
            throw UserFacingError("filesystem \(name) is in use by another kmsfs process", exitCode: ExitCodes.mountFailed)
        }
        let passphrase = try SecretInput.passphrase(file: passphraseFile)
        try StoreUpgrade.finishInterrupted(store)
        let unlocked = try Unlock.open(store, home: home, passphrase: passphrase, purpose: "mount")
        let (superblock, keys, manager) = (unlocked.superblock, unlocked.keys, unlocked.manager)
        if notify {
            for failure in unlocked.failed { Daemon.note("passkey \(failure.passkey) did not answer: \(failure.reason)") }
            // Which passkeys did it, when that is news: another than the first tried, or shares.
            if !unlocked.failed.isEmpty || unlocked.answered.count > 1 { Daemon.note("unlocked by \(unlocked.summary)") }
        }
        let readOnly = self.readOnly || superblock.requiresReadOnly
        let metadata = try MetadataStore(path: store.metadata, names: keys.names, integrity: keys.integrity, create: false,
                                         reservePath: store.root + "/reserve", exclusive: true, resealRows: acceptRollback, groupCommit: !readOnly)
        // The root must verify before anything is served: a mount of a store whose root was edited is refused.
        _ = try metadata.attributes(.root)
        let anchor = try metadata.hasIntegrity ? AnchorKeeper(RollbackAnchor(home: home, superblock: superblock, name: name),
                                                              remote: vaultAnchor(unlocked, home: home, superblock: superblock, metadata: metadata), metadata: metadata) : nil
        try anchor?.check(accept: acceptRollback)
        // The catalog's file id limits decide what is preserved for each snapshot: they must be the sealed ones.
        let preserver = try SnapshotPreserver(storeRoot: store.root, keys: keys.integrity)
        let fileSystem = FileSystem(metadata: metadata, dataStore: DataStore(directory: store.data, cipher: keys.data, unitMAC: keys.integrity?.units, preserver: preserver,
                                                                                   metadata: metadata),
                                    storeRoot: store.root, readOnly: readOnly)
        if !readOnly {
            let removed = try fileSystem.removeOrphans()
            if removed > 0 { writeStderr("kmsfs: removed \(removed) unlinked inode(s) left open at the last crash\n") }
        }
        var options = FuseSession.Options(fsName: MountTable.source(store: store.root))
        options.readOnly = readOnly
        options.allowOther = allowOther
        options.writebackCache = !noWriteback && !readOnly
        options.allowSetuid = suid
        options.allowDevices = dev
        options.debug = debug
        let session = try FuseSession(fileSystem: fileSystem, mountpoint: mountpoint, options: options)
        applyReadahead(at: mountpoint)
        lock.record(mountpoint: mountpoint)
        let reference = manager.reference
        let report = MountStatus(name: name, store: store, superblock: superblock,
                                 unlockedBy: "\(reference.type.rawValue) \(reference.keyIdentifier)" + (reference.address.isEmpty ? "" : " (\(reference.address))"),
                                 passkeys: unlocked.answered, failedPasskeys: unlocked.failed.map(\.passkey),
                                 mountpoint: mountpoint, readOnly: readOnly, fileSystem: fileSystem)
        try SnapshotRequests.serve(store: store, superblock: superblock, keys: keys, fileSystem: fileSystem, metadata: metadata, preserver: preserver,
                                   anchor: anchor) { report.answer() }
        if let metrics { report.startMetricsFile(metrics) }
        if notify { Daemon.report(.ready) }
        if !readOnly {
            fileSystem.startMetadataCommitter()
            anchor?.startPeriodic()
        }
        if let vault = manager as? VaultKeyManager { TokenRenewer.start(vault, home: home, filesystem: name) }
        let status = session.run(maxThreads: options.maxThreads)
        session.close()  // unmounts and runs the destroy callback: the last flush, which advances the generation
        do { try anchor?.advance(force: true) } catch { writeStderr("kmsfs: \(UserFacingError.from(error).message)\n") }
        if let metrics { MountStatus.removeMetricsFile(metrics) }
        withExtendedLifetime(lock) {}
        guard status == 0 else { throw UserFacingError("the FUSE session ended with status \(status)", exitCode: ExitCodes.io) }
    }
}

extension MountCommand {
    /// Sets the kernel's readahead of the new mount (`--readahead`; root
    /// only, see KernelReadahead), once the session answers: the kernel
    /// lowers the value to the one the daemon's FUSE INIT reply names when it
    /// processes that reply, so it is set after a first request comes back.
    func applyReadahead(at mountpoint: String) {
        guard readahead > 0, let device = MountTable.current().entry(at: mountpoint)?.device else { return }
        let kib = readahead
        Thread {
            var st = stat()
            _ = stat(mountpoint, &st)
            KernelReadahead.set(kib: kib, device: device)
        }.start()
    }

    /// The Vault anchor, when the home keeps anchors in Vault: through the
    /// passkey that has an anchor mount, whichever passkey unlocked (removing
    /// the Vault slot from a rolled-back store must not skip the check).
    func vaultAnchor(_ unlocked: Unlocked, home: Home, superblock: Superblock, metadata: MetadataStore) throws -> VaultAnchor? {
        let registry = try PasskeyRegistry.load(home)
        guard let passkey = registry.unlockOrder.first(where: { $0.type == .vault && $0.kms?.anchorMount != nil }),
              let mount = passkey.kms?.anchorMount else { return nil }
        let answered = unlocked.kms == passkey.kms ? unlocked.manager : try passkey.manager(home: home)
        guard let vault = answered as? VaultKeyManager else { return nil }
        return VaultAnchor(store: vault.anchorStore(mount: mount), name: name, superblock: superblock, instance: metadata.instance)
    }

    /// Mounts snapshot `name` read-only. The live filesystem may be mounted
    /// and written meanwhile: the view reads through the snapshot's deltas.
    func serveSnapshot(_ name: String, home: Home, store: StorePaths, mountpoint: String, notify: Bool) throws {
        let manager = SnapshotManager(store: store)
        let info = try SnapshotRequests.usable(name, manager: manager)
        let viewLock = try FileLock.shared(info, paths: manager.paths)
        let passphrase = try SecretInput.passphrase(file: passphraseFile)
        let keys = try Unlock.open(store, home: home, passphrase: passphrase, purpose: "snapshot-mount \(name)").keys
        let metadata = try MetadataStore(path: manager.paths.metadata(info), names: keys.names, integrity: keys.integrity, create: false, readOnly: true)
        try metadata.verifySnapshotSeal(id: info.id, name: info.name, created: info.created, limit: info.fileIDLimit)
        let overlay = SnapshotOverlay(storeRoot: store.root, snapshot: info)
        let fileSystem = FileSystem(metadata: metadata, dataStore: DataStore(directory: store.data, cipher: keys.data, unitMAC: keys.integrity?.units, overlay: overlay),
                                    storeRoot: store.root, readOnly: true)
        var options = FuseSession.Options(fsName: MountTable.source(store: store.root, snapshot: name))
        options.readOnly = true
        options.allowOther = allowOther
        options.writebackCache = false
        options.debug = debug
        let session = try FuseSession(fileSystem: fileSystem, mountpoint: mountpoint, options: options)
        applyReadahead(at: mountpoint)
        if notify { Daemon.report(.ready) }
        let status = session.run(maxThreads: options.maxThreads)
        session.close()
        withExtendedLifetime(viewLock) {}
        guard status == 0 else { throw UserFacingError("the FUSE session ended with status \(status)", exitCode: ExitCodes.io) }
    }
}

/// `kmsfs umount <mountpoint|name>`: unmounts and waits for the daemon to finish.
struct UmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "umount", abstract: "Unmount a kmsfs mount (by mount point, or by filesystem name) and wait until its daemon has flushed and exited.")

    @OptionGroup var homeOptions: HomeOptions
    @Argument(help: "Mount point, or the name of a mounted filesystem of the home.") var target: String
    @Flag(name: [.short, .long], help: "Lazy unmount (detach even if busy).") var lazy = false

    func run() throws {
        try userErrors {
            let home = homeOptions.resolved
            let table = MountTable.current()
            let path = Home.mountPath(target)
            let mountpoint: String
            let lock: String?
            // A bare name is the filesystem of that name first (`kmsfs umount demo` in /mnt must not
            // unmount /mnt/demo when that is something else), a path is a mount point.
            if !target.contains("/"), ComponentName.isValid(target), let found = table.mountpoints(ofStore: home.store(target).root).first {
                mountpoint = found
                lock = home.store(target).root + "/lock"
            } else if let entry = table.entry(at: path), entry.fsType == "fuse.kmsfs" {
                mountpoint = path
                lock = Self.lock(ofSource: entry.source, mountedAt: path, home: home)
            } else {
                throw UserFacingError("\(target) is neither a kmsfs mount point nor a mounted filesystem of \(home.path)", exitCode: ExitCodes.usage)
            }
            if let lock, lock.hasSuffix("/lock"), !lock.contains("/snapshots/") { Self.sealBeforeUnmount(mountpoint: mountpoint, storeRoot: String(lock.dropLast("/lock".count))) }
            let status = Daemon.runQuietly("/bin/fusermount3", ["-u"] + (lazy ? ["-z"] : []) + [mountpoint])
            guard status == 0 else {
                throw UserFacingError("unmounting \(mountpoint) failed (is it busy? see 'fuser -m \(mountpoint)')", hint: "kmsfs umount --lazy \(mountpoint)", exitCode: ExitCodes.mountFailed)
            }
            guard let lock else { return }
            // The daemon's last flush (metadata, unit tags, digests, anchors) can take a while
            // on a busy disk: returning before it ends would let a caller see a half-closed store.
            var ticks = 0  // of 50 ms
            while StoreLock.isHeld(lock) {
                if ticks >= Self.flushWaitSeconds * 20 {
                    throw UserFacingError("\(mountpoint) is unmounted, but its daemon is still flushing after \(Self.flushWaitSeconds) s (see its log)", exitCode: ExitCodes.io)
                }
                if ticks == 100 { writeStderr("kmsfs: waiting for the daemon of \(mountpoint) to finish flushing...\n") }
                usleep(50_000)
                ticks += 1
            }
        }
    }

    /// While the mount still runs: the kernel's dirty pages go to the daemon
    /// (syncfs), which then settles every unit tag, records the content
    /// digests and makes the metadata durable, as its last flush would. A
    /// daemon that dies while libfuse tears down its threads then loses
    /// nothing, and the last flush has little left to do. Best effort: the
    /// unmount goes on whatever the answer (the last flush still runs).
    static func sealBeforeUnmount(mountpoint: String, storeRoot: String) {
        let fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = syncfs(fd)
            close(fd)
        }
        _ = try? ControlChannel.request(storeRoot: storeRoot, SnapshotRequests.sealVerb, "", timeout: 600)
    }

    /// How long umount waits for the daemon's last flush before reporting it.
    static let flushWaitSeconds = 600

    /// The lock a mount's daemon holds: the store's, when its daemon recorded
    /// this mount point; a snapshot view's lock for `NAME@SNAPSHOT`. Nil for a
    /// mount of another home (nothing to wait on that this home knows).
    static func lock(ofSource source: String, mountedAt mountpoint: String, home: Home) -> String? {
        if let at = source.lastIndex(of: "@") {
            let store = home.store(String(source[..<at]))
            let manager = SnapshotManager(store: store)
            return (try? SnapshotRequests.named(String(source[source.index(after: at)...]), manager: manager)).map { manager.paths.lock($0) }
        }
        let lock = home.store(source).root + "/lock"
        return StoreLock.holder(lock)?.mountpoint == mountpoint ? lock : nil
    }
}

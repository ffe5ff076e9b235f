import BlockCipher
import Foundation
internal import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// How the CLI asks a running mount daemon to do what needs its pause of the
/// writers (snapshot create and delete): one request line, one answer line,
/// over the Unix socket file `<store>/control`. The store directory is the
/// owner's alone (0700), so no other user can bind the name first or connect;
/// both ends also check the other's SO_PEERCRED (root or the same uid), and
/// the client checks that the answering process is the one holding the store
/// lock. The path is reached through /proc/self/fd/N of the store directory,
/// which keeps it under the 108-byte limit of sun_path however deep the home.
///
///     request:  <verb> <argument>\n
///     answer:   OK <text>\n  |  ERR <exit code> <message>\n
enum ControlChannel {
    static let socketName = "control"

    /// Calls `body` with the socket's address, valid while it runs.
    static func withAddress<R>(storeRoot: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> R) throws -> R {
        let directory = open(storeRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { throw UserFacingError("cannot open \(storeRoot): \(String(cString: strerror(errno)))", exitCode: ExitCodes.io) }
        defer { close(directory) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array("/proc/self/fd/\(directory)/\(socketName)".utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in path.enumerated() { raw[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + 1)
        return try withUnsafePointer(to: &address) { try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) } }
    }

    /// The peer's credentials, if it is root or this process's uid.
    static func trustedPeer(_ fd: Int32) -> clinux_ucred? {
        var credentials = clinux_ucred()
        var length = socklen_t(MemoryLayout<clinux_ucred>.size)
        guard getsockopt(fd, SOL_SOCKET, CLINUX_SO_PEERCRED, &credentials, &length) == 0,
              credentials.uid == 0 || credentials.uid == geteuid() else { return nil }
        return credentials
    }

    /// Serves requests on a background thread for the life of the process.
    static func serve(storeRoot: String, handler: @escaping @Sendable (String, String) -> Result<String, UserFacingError>) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw UserFacingError("control socket: \(String(cString: strerror(errno)))", exitCode: ExitCodes.io) }
        // Only the daemon that holds the store lock gets here: a socket file left by a killed one is stale.
        unlink(storeRoot + "/" + socketName)
        let bound = try withAddress(storeRoot: storeRoot) { bind(fd, $0, $1) }
        guard bound == 0, chmod(storeRoot + "/" + socketName, 0o600) == 0, listen(fd, 4) == 0 else {
            let e = errno
            close(fd)
            throw UserFacingError("control socket: \(String(cString: strerror(e)))", exitCode: ExitCodes.io)
        }
        let thread = Thread { accepting(fd, handler) }
        thread.start()
    }

    private static func accepting(_ listener: Int32, _ handler: @Sendable (String, String) -> Result<String, UserFacingError>) {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { if errno == EINTR { continue } else { return } }
            defer { close(client) }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            // A client that connects and says nothing must not block the next one.
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            _ = setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            guard trustedPeer(client) != nil, let line = readLine(client) else { continue }
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            let answer: String
            switch handler(parts.first ?? "", parts.count > 1 ? parts[1] : "") {
            case .success(let text): answer = "OK \(text)\n"
            case .failure(let e): answer = "ERR \(e.exitCode) \(e.message.replacingOccurrences(of: "\n", with: " "))\n"
            }
            _ = Array(answer.utf8).withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }

    /// Sends one request to the daemon of `storeRoot` and returns its answer text, or throws its error.
    /// - Parameter timeout: seconds to wait for the answer (nil: as long as it takes, e.g. a snapshot of a big store).
    static func request(storeRoot: String, _ verb: String, _ argument: String, timeout: Int? = nil) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw UserFacingError("control socket: \(String(cString: strerror(errno)))", exitCode: ExitCodes.io) }
        defer { close(fd) }
        if let timeout {
            var limit = timeval(tv_sec: timeout, tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        }
        let connected = try withAddress(storeRoot: storeRoot) { connect(fd, $0, $1) }
        guard connected == 0 else {
            throw UserFacingError("cannot reach the mount daemon of \(storeRoot): \(String(cString: strerror(errno)))", exitCode: ExitCodes.mountFailed)
        }
        // Whoever answers must be the daemon of this store: root or our uid, and the lock holder.
        guard let peer = trustedPeer(fd), peer.pid == StoreLock.holder(storeRoot + "/lock")?.pid else {
            throw UserFacingError("the control socket of \(storeRoot) is not served by its mount daemon; refusing to talk to it", exitCode: ExitCodes.mountFailed)
        }
        let request = Array("\(verb) \(argument)\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard let line = readLine(fd) else {
            throw UserFacingError("the mount daemon of \(storeRoot) closed the connection without an answer", exitCode: ExitCodes.mountFailed)
        }
        if line.hasPrefix("OK") { return String(line.dropFirst(3)) }
        let rest = line.hasPrefix("ERR ") ? line.dropFirst(4) : Substring(line)
        let code = Int32(rest.prefix { $0 != " " }) ?? ExitCodes.internalError
        throw UserFacingError(String(rest.drop { $0 != " " }.dropFirst()), exitCode: code)
    }

    private static func readLine(_ fd: Int32) -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < 1 << 16 {  // a status answer is one JSON line of a few KiB
            let n = recv(fd, &byte, 1, 0)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { return nil }
            if byte == 0x0a { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return nil
    }
}

import BlockCipher
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `<home>/events.log`: every key event (a key wrapped, unwrapped, rewrapped,
/// a KMS configured, a bundle imported, a token renewal that failed) as one
/// JSON line, hash-chained: each line's `prev` is the SHA-256 of the line
/// before it (64 zeros for the first), and `<home>/events.head` holds the
/// sequence number and hash of the last line, so an edited line, a removed
/// line and a cut-off tail are all detected by `verify`. Fields are names,
/// ids, key versions and outcomes: never a key, token, passphrase or credential.
/// Someone who can rewrite the whole home can rewrite the chain too; the chain
/// is against edits that do not, and for a reader to trust what it reads.
enum AuditLog {
    static let zeroHash = String(repeating: "0", count: 64)

    /// Appends one event. An audit record that cannot be written is reported
    /// on stderr and does not undo the operation it records (which has happened).
    static func record(_ home: Home, _ event: String, _ fields: [String: Any] = [:]) {
        do { try append(home, event, fields) } catch {
            writeStderr("kmsfs: warning: could not record '\(event)' in \(home.path)/events.log: \(UserFacingError.from(error).message)\n")
        }
    }

    private static func append(_ home: Home, _ event: String, _ fields: [String: Any]) throws {
        try FileManager.default.createDirectory(atPath: home.path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = home.path + "/events.log"
        let fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw UserFacingError("cannot open \(path): \(String(cString: strerror(errno)))", exitCode: ExitCodes.io) }
        defer { close(fd) }
        // One writer at a time (mount daemons and CLI commands of this home).
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        dropTornTail(fd)
        let last = lastLine(fd)
        let seq = last.flatMap { line in (try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])?["seq"] as? Int } ?? 0
        var object = fields
        object["event"] = event
        object["seq"] = seq + 1
        object["time"] = timestamp()
        object["pid"] = Int(getpid())
        object["uid"] = Int(getuid())
        object["prev"] = last.map { SHA256.hash($0).hexString } ?? zeroHash
        let line = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        let bytes = line + [0x0a]
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count, fsync(fd) == 0 else {
            throw UserFacingError("cannot append to \(path): \(String(cString: strerror(errno)))", exitCode: ExitCodes.io)
        }
        try AtomicFile.write(Array("\(seq + 1) \(SHA256.hash(line).hexString)\n".utf8), to: home.path + "/events.head")
    }

    /// A line cut short by a crash (no newline at the end of the file) was never
    /// a complete event: it is cut off, so the next event follows the last whole one.
    private static func dropTornTail(_ fd: Int32) {
        guard let (buffer, start, size) = tail(fd), buffer.last != 0x0a else { return }
        let keep = buffer.lastIndex(of: 0x0a).map { start + $0 + 1 } ?? (start == 0 ? 0 : size)
        _ = ftruncate(fd, off_t(keep))
    }

    /// The file's last 1 MiB (or all of it), where it starts, and the file's size.
    private static func tail(_ fd: Int32) -> (bytes: [UInt8], start: Int, size: Int)? {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        let size = Int(st.st_size), window = min(size, 1 << 20)
        var buffer = [UInt8](repeating: 0, count: window)
        guard buffer.withUnsafeMutableBytes({ pread(fd, $0.baseAddress, window, off_t(size - window)) }) == window else { return nil }
        return (buffer, size - window, size)
    }

    /// The last complete line of the file (without its newline).
    private static func lastLine(_ fd: Int32) -> [UInt8]? {
        guard let (buffer, _, _) = tail(fd) else { return nil }
        var end = buffer.count
        while end > 0 && buffer[end - 1] == 0x0a { end -= 1 }
        guard end > 0 else { return nil }
        let start = buffer[..<end].lastIndex(of: 0x0a).map { $0 + 1 } ?? 0
        return Array(buffer[start..<end])
    }

    /// `at` (default now) as ISO 8601 UTC, to the second.
    static func timestamp(at when: time_t = time(nil)) -> String {
        var now = when
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%SZ", &parts)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The events in order, and the first problem with the chain, if any.
    static func read(_ home: Home) throws -> (events: [[String: Any]], problem: String?) {
        let path = home.path + "/events.log"
        // Shared lock: a writer appends the line and then the head; read both between writers.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return ([], nil) }
        defer { close(fd) }
        while flock(fd, LOCK_SH) != 0 && errno == EINTR {}
        guard let data = FileManager.default.contents(atPath: path) else { return ([], nil) }
        var events: [[String: Any]] = []
        var previous = zeroHash, beforeLast = zeroHash
        var lineNumber = 0
        for line in data.split(separator: 0x0a, omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.isEmpty { continue }
            guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                return (events, "line \(lineNumber) of \(path) is not a JSON event")
            }
            guard object["prev"] as? String == previous, object["seq"] as? Int == events.count + 1 else {
                return (events, "line \(lineNumber) of \(path) does not follow the line before it: the history was edited or lines were removed")
            }
            events.append(object)
            beforeLast = previous
            previous = SHA256.hash(Array(line)).hexString
        }
        let head = (try? String(contentsOfFile: home.path + "/events.head", encoding: .utf8))?.split(separator: " ")
        if let head, head.count == 2 {
            let count = Int(head[0]) ?? -1
            let hash = head[1].trimmingCharacters(in: .whitespacesAndNewlines)
            // One event ahead of the head is a crash between appending and confirming it, not an edit.
            let confirmed = (count == events.count && hash == (events.isEmpty ? zeroHash : previous))
                || (count == events.count - 1 && hash == beforeLast)
            guard confirmed else {
                return (events, count > events.count
                    ? "\(path) ends at event \(events.count), but events.head records event \(count): the history was cut off"
                    : "\(path) does not match events.head (event \(count)): the history was replaced")
            }
        } else if !events.isEmpty {
            return (events, "\(home.path)/events.head is missing or unreadable")
        }
        return (events, nil)
    }
}

import ArgumentParser
import BlockCipher
import Foundation
import KeyVault
#if canImport(Glibc)
import Glibc
#endif

/// Detaching the mount daemon: the parent re-runs itself with
/// KMSFS_DAEMON_CHILD=1 and waits on the child's stdout for one line,
/// "READY" or "ERROR <code> <message>", so the user's `kmsfs mount` exits
/// with the real outcome; "NOTE <message>" lines before it are warnings the
/// user should see (a passkey that did not answer). The child logs to
/// <home>/logs/<name>.log.
enum Daemon {
    enum Outcome {
        case ready
        case failure(code: Int32, message: String)
    }

    static func spawnAndWait(arguments: [String], logPath: String, home: Home) throws {
        let process = Process()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let length = buffer.withUnsafeMutableBytes { readlink("/proc/self/exe", $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count - 1) }
        process.executableURL = URL(fileURLWithPath: length > 0 ? String(decoding: buffer.prefix(length), as: UTF8.self) : arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let parent = ProcessEnvironment.current
        process.environment = DaemonLaunch.environment(from: parent)
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        let pipe = Pipe()
        process.standardOutput = pipe
        let secretPipe = Pipe()
        process.standardInput = secretPipe
        let logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        process.standardError = logFD >= 0 ? FileHandle(fileDescriptor: logFD, closeOnDealloc: true) : FileHandle.nullDevice
        try process.run()
        try? pipe.fileHandleForWriting.close()
        try? secretPipe.fileHandleForReading.close()
        // A child that dies before reading must not kill us with SIGPIPE: its error line matters.
        signal(SIGPIPE, SIG_IGN)
        var secrets = DaemonLaunch.secrets(from: parent)
        secrets.withUnsafeBytes { raw in
            var sent = 0
            while sent < raw.count {
                let n = write(secretPipe.fileHandleForWriting.fileDescriptor, raw.baseAddress! + sent, raw.count - sent)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                sent += n
            }
        }
        wipe(&secrets)
        try? secretPipe.fileHandleForWriting.close()
        var line = ""
        repeat {
            let data = pipe.fileHandleForReading.readDataToEndOfFileOrLine()
            line = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if line.hasPrefix("NOTE ") { writeStderr("kmsfs: \(line.dropFirst(5))\n") }
        } while line.hasPrefix("NOTE ")
        if line == "READY" { return }
        if line.hasPrefix("ERROR ") {
            let rest = line.dropFirst(6)
            let code = Int32(rest.prefix { $0 != " " }) ?? ExitCodes.mountFailed
            let message = rest.drop { $0 != " " }.dropFirst()
            writeStderr("kmsfs: error: \(message)\n")
            throw ExitCode(code)
        }
        throw UserFacingError("the mount daemon exited before the mount was ready", hint: "see \(logPath)", exitCode: ExitCodes.mountFailed)
    }

    /// Called in the child before `report`: a warning the waiting parent prints.
    static func note(_ message: String) {
        writeStdout("NOTE \(message.replacingOccurrences(of: "\n", with: " "))\n")
    }

    /// Called in the child: tells the waiting parent the outcome, then detaches stdout.
    static func report(_ outcome: Outcome) {
        switch outcome {
        case .ready:
            writeStdout("READY\n")
            setsid()
        case .failure(let code, let message):
            writeStdout("ERROR \(code) \(message.replacingOccurrences(of: "\n", with: " "))\n")
        }
        let null = open("/dev/null", O_WRONLY)
        if null >= 0 {
            dup2(null, 1)
            close(null)
        }
    }

    @discardableResult
    static func runQuietly(_ tool: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FileManager.default.fileExists(atPath: tool) ? tool : "/usr/bin/" + (tool as NSString).lastPathComponent)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return 127 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

extension FileHandle {
    /// Reads until a newline or EOF.
    func readDataToEndOfFileOrLine() -> Data {
        var out = Data()
        while true {
            let chunk = (try? read(upToCount: 1)) ?? nil
            guard let chunk, !chunk.isEmpty else { break }
            out.append(chunk)
            if chunk.last == 0x0a { break }
        }
        return out
    }
}

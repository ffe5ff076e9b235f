import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Progress of a long export, import or verify: one line on stderr, redrawn
/// at most 4 times a second, only when stderr is a terminal (scripts and
/// logs stay quiet; they get the --json summary instead).
public final class Progress {
    let verb: String
    let totalBytes: UInt64
    let enabled: Bool
    let started = Date()
    private var lastDraw = Date.distantPast
    public private(set) var bytes: UInt64 = 0
    public private(set) var chunks = 0
    public private(set) var transferredBytes: UInt64 = 0

    /// `enabled: false` silences it even on a terminal (--json).
    public init(verb: String, totalBytes: UInt64, enabled: Bool = true) {
        self.verb = verb
        self.totalBytes = totalBytes
        self.enabled = enabled && isatty(2) == 1
    }

    /// Records `count` bytes processed, of which `transferred` were sent or received.
    public func advance(_ count: Int, transferred: Int = 0, chunk: Bool = true) {
        bytes += UInt64(count)
        transferredBytes += UInt64(transferred)
        if chunk { chunks += 1 }
        draw(force: false)
    }

    public func finish() {
        guard enabled else { return }
        draw(force: true)
        writeError("\n")
    }

    private func draw(force: Bool) {
        guard enabled else { return }
        let now = Date()
        guard force || now.timeIntervalSince(lastDraw) >= 0.25 else { return }
        lastDraw = now
        let elapsed = max(now.timeIntervalSince(started), 0.001)
        let rate = Double(bytes) / elapsed
        var line = "\r\(verb): \(humanBytes(bytes))"
        if totalBytes > 0 { line += " / \(humanBytes(totalBytes)) (\(min(100, Int(Double(bytes) * 100 / Double(totalBytes))))%)" }
        line += ", \(chunks) chunks, \(humanBytes(UInt64(rate)))/s"
        if totalBytes > bytes && rate > 0 {
            let eta = Int(Double(totalBytes - bytes) / rate)
            line += ", ETA \(eta / 60):" + String(format: "%02d", eta % 60)
        }
        writeError(line + "\u{1B}[K")
    }

    public var elapsed: Double { Date().timeIntervalSince(started) }

    private func writeError(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}

/// A byte count as people read it: "512 B", "1.5 MiB".
public func humanBytes(_ n: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
}

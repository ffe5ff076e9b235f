import ArgumentParser
import Foundation

/// `kmsfs security events [--json] [--verify]`: the home's key events, oldest first.
struct EventsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Show the home's key events (create, unwrap, rewrap, KMS changes, imports, token renewal failures) and check their hash chain.",
        discussion: "Exit 0 when the chain is intact, 65 when a line was edited or removed or the log was cut off."
    )

    @OptionGroup var homeOptions: HomeOptions
    @Flag(help: "Print the events as a JSON array.") var json = false
    @Flag(help: "Only check the chain; print one line.") var verify = false

    func run() throws {
        try userErrors {
            let home = homeOptions.resolved
            let (events, problem) = try AuditLog.read(home)
            if verify {
                if let problem { throw UserFacingError(problem, exitCode: ExitCodes.corruptOrUnsupported) }
                writeStdout("\(events.count) event(s), hash chain intact\n")
                return
            }
            if json {
                try writeJSON(events)
            } else {
                let fixed: Set<String> = ["seq", "time", "event", "prev", "pid", "uid"]
                for e in events {
                    let rest = e.keys.filter { !fixed.contains($0) }.sorted().map { "\($0)=\(e[$0].map { "\($0)" } ?? "")" }
                    // Values may carry a KMS server's error text: no control characters reach the terminal.
                    let line = "\(e["seq"] ?? "")  \(e["time"] ?? "")  \(e["event"] ?? "")  \(rest.joined(separator: " "))  (uid \(e["uid"] ?? ""))"
                    writeStdout(String(line.unicodeScalars.map { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) ? "?" : Character($0) }) + "\n")
                }
            }
            if let problem { throw UserFacingError(problem, exitCode: ExitCodes.corruptOrUnsupported) }
        }
    }
}

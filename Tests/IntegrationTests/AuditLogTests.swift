import Foundation
import Testing

/// `<home>/events.log`: every key event on record, hash-chained, no secret in it.
@Suite struct AuditLogTests {
    @Test func keyEventsAreRecordedChainedAndSecretFree() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        let passphrase = "audit passphrase 7f3c"
        try box.create()
        #expect(try box.kmsfs(["fs", "create", "p"], env: ["KMSFS_PASSPHRASE": passphrase]).status == 0)
        try box.mount()
        try box.write("a", "x")
        try box.umount()
        let p = try box.directory("p")
        #expect(try box.kmsfs(["mount", "p", p], env: ["KMSFS_PASSPHRASE": "wrong passphrase"]).status != 0)
        #expect(try box.kmsfs(["mount", "p", p], env: ["KMSFS_PASSPHRASE": passphrase]).status == 0)
        try box.umount(p)
        #expect(try box.kmsfs("fsck", "demo").status == 0)
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0)
        let bundle = box.root + "/bundle"
        #expect(try box.kmsfs("snapshot", "export", "demo", "s1", bundle).status == 0)
        #expect(try box.kmsfs("snapshot", "import", bundle, "copy").status == 0)
        #expect(try box.kmsfs("fs", "delete", "copy", "--yes").status == 0)

        let list = try box.kmsfs("security", "events", "--json")
        #expect(list.status == 0, "\(list.stderr)")
        let events = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]] ?? []
        let summary = events.map { "\($0["event"] ?? "") \($0["filesystem"] ?? "") \($0["purpose"] ?? "")".trimmingCharacters(in: .whitespaces) }
        let expected = ["create demo", "create p", "unwrap demo mount", "unwrap-failed p mount", "unwrap p mount", "unwrap demo fsck",
                        "unwrap demo snapshot-create s1",
                        "unwrap copy import", "import copy", "delete copy"]
        #expect(summary == expected, "\(summary)")
        #expect(events.map { $0["seq"] as? Int ?? 0 } == Array(1...events.count))
        #expect(events.allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true && $0["uid"] as? Int == 0 })
        #expect(try box.kmsfs("security", "events", "--verify").stdout.contains("\(expected.count) event(s), hash chain intact"))

        // No secret: the passphrase, and the local key file's bytes in any encoding.
        let log = try String(contentsOfFile: box.home + "/events.log", encoding: .utf8)
        let key = try Data(contentsOf: URL(fileURLWithPath: box.home + "/local.key"))
        for secret in [passphrase, "wrong passphrase", key.base64EncodedString(), key.map { String(format: "%02x", $0) }.joined()] {
            #expect(!log.contains(secret), "a secret is in events.log")
        }

        // An edited line, a removed line and a cut-off tail are each detected.
        let original = log
        let lines = original.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let edits: [(String, String)] = [
            ("edited", lines.enumerated().map { $0.offset == 2 ? $0.element.replacingOccurrences(of: "\"mount\"", with: "\"fsck\"") : $0.element }.joined(separator: "\n")),
            ("removed", lines.enumerated().filter { $0.offset != 3 }.map(\.element).joined(separator: "\n")),
            ("cut off", lines.dropLast(2).joined(separator: "\n") + "\n"),
        ]
        for (name, text) in edits {
            try text.write(toFile: box.home + "/events.log", atomically: false, encoding: .utf8)
            let verify = try box.kmsfs("security", "events", "--verify")
            #expect(verify.status == 65 && verify.stderr.split(separator: "\n").count <= 2, "\(name): \(verify.status) \(verify.stderr)")
        }
        try original.write(toFile: box.home + "/events.log", atomically: false, encoding: .utf8)
        #expect(try box.kmsfs("security", "events", "--verify").status == 0)
    }

    @Test func aCrashMidAppendIsNotTamperingAndVerifyNeverRacesAWriter() throws {
        let box = try Sandbox()
        for name in ["a", "b"] { try box.create(name) }
        let log = box.home + "/events.log", head = box.home + "/events.head"
        // A power cut after the line but before the head: one event ahead of the head is fine.
        let confirmed = try String(contentsOfFile: head, encoding: .utf8)
        try box.create("c")
        try confirmed.write(toFile: head, atomically: false, encoding: .utf8)
        let ahead = try box.kmsfs("security", "events", "--verify")
        #expect(ahead.status == 0, "head one behind after a crash: \(ahead.stderr)")
        // A line cut short by a crash: dropped by the next append, which follows the last whole event.
        let handle = try #require(FileHandle(forWritingAtPath: log))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"event":"create","filesystem":"d","pr"#.utf8))
        try handle.close()
        try box.create("d")
        let events = try JSONSerialization.jsonObject(with: Data(try box.kmsfs("security", "events", "--json").stdout.utf8)) as? [[String: Any]] ?? []
        #expect(events.map { $0["seq"] as? Int ?? 0 } == [1, 2, 3, 4] && events.last?["filesystem"] as? String == "d", "\(events)")
        #expect(try box.kmsfs("security", "events", "--verify").status == 0)
        // --verify while another process appends: never a false alarm.
        let writer = try Harness.launch("/bin/sh", ["-c", "for i in $(seq 1 25); do KMSFS_HOME=\(box.home) \(Harness.binary) fsck a >/dev/null 2>&1; done"])
        var alarms: [String] = []
        while writer.isRunning {
            let v = try box.kmsfs("security", "events", "--verify")
            if v.status != 0 { alarms.append(v.stderr) }
        }
        #expect(alarms.isEmpty, "\(alarms)")
    }
}

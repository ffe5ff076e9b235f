import Foundation
import Testing

/// scripts/install.sh into a temporary prefix (helpers in /sbin, where mount(8)
/// looks), then what an admin does with it: man pages, completions, the unit
/// template, `mount -t kmsfs`, `mount -t fuse.kmsfs`, an fstab mounted twice with
/// `mount -a`, `umount NAME`; and `--uninstall` removes exactly that.
@Suite(.serialized) struct InstallTests {
    @Test func installMountThroughMount8AndUninstall() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        let prefix = try box.directory("prefix")
        for helper in ["/sbin/mount.kmsfs", "/sbin/mount.fuse.kmsfs"] {
            // Another installation owns the helpers: installing over it would break it.
            let existing = try? FileManager.default.destinationOfSymbolicLink(atPath: helper)
            try #require(existing == nil || !FileManager.default.fileExists(atPath: helper), "\(helper) already exists (\(existing ?? "a file"))")
        }
        // `swift test` holds .build, so the man page generator was built beforehand (scripts/test.sh).
        guard let tool = ProcessInfo.processInfo.environment["KMSFS_MANUAL_TOOL"], !tool.isEmpty else {
            if Harness.isCI { Issue.record("KMSFS_MANUAL_TOOL is not set (scripts/test.sh sets it)") } else { print("SKIP install test: set KMSFS_MANUAL_TOOL=$(scripts/install.sh --print-manual-tool)") }
            return
        }
        let install = try Harness.run("/bin/bash", [Harness.packageRoot + "/scripts/install.sh", "--prefix", prefix, "--sbindir", "/sbin",
                                                    "--binary", Harness.binary, "--manual-tool", tool])
        try #require(install.status == 0, "install.sh: \(install.stderr.suffix(800))")
        var uninstalled = false
        defer { if !uninstalled { _ = try? Harness.run("/bin/bash", [Harness.packageRoot + "/scripts/install.sh", "--uninstall", "--prefix", prefix]) } }
        let bin = prefix + "/bin/kmsfs"
        #expect(try Harness.run(bin, ["--version"]).status == 0)

        // Man pages render, one per command; completions load in bash; the unit names the binary.
        let pages = try FileManager.default.contentsOfDirectory(atPath: prefix + "/share/man/man1").filter { $0.hasSuffix(".1") }
        for page in ["kmsfs.1", "kmsfs.mount.1", "kmsfs.status.1", "kmsfs.security.events.1", "kmsfs.snapshot.export.1"] {
            #expect(pages.contains(page), "no man page \(page)")
        }
        for page in pages {
            let man = try Harness.run("/usr/bin/man", ["-l", "-P", "cat", "\(prefix)/share/man/man1/\(page)"], env: ["MANWIDTH": "80"])
            #expect(man.status == 0 && man.stdout.contains("SYNOPSIS") && man.stderr.isEmpty, "man \(page): \(man.stderr)")
        }
        let completion = prefix + "/share/bash-completion/completions/kmsfs"
        #expect(try Harness.run("/bin/bash", ["-n", completion]).status == 0)
        let complete = try Harness.run("/bin/bash", ["-c", "source \(completion) && complete -p kmsfs"])
        #expect(complete.status == 0 && complete.stdout.contains("kmsfs"), "\(complete.stdout) \(complete.stderr)")
        for file in ["share/zsh/site-functions/_kmsfs", "share/fish/vendor_completions.d/kmsfs.fish"] {
            #expect(FileManager.default.fileExists(atPath: prefix + "/" + file), "\(file)")
        }
        let unit = try String(contentsOfFile: prefix + "/lib/systemd/system/kmsfs@.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=\(bin) mount %i") && unit.contains("After=network-online.target"))
        // systemd's own checker, on an instance of the template (its man: links resolve through MANPATH).
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") {
            let units = try box.directory("units")
            try unit.write(toFile: units + "/kmsfs@demo.service", atomically: false, encoding: .utf8)
            let verify = try Harness.run("/usr/bin/systemd-analyze", ["verify", units + "/kmsfs@demo.service"], env: ["MANPATH": prefix + "/share/man"])
            #expect(verify.status == 0 && verify.stderr.isEmpty, "systemd-analyze verify: \(verify.stderr)")
        } else {
            print("SKIP systemd-analyze verify: systemd-analyze is not installed")
        }

        // mount(8) through the installed helpers. Unique names: umount(8) NAME matches the source.
        let tag = UUID().uuidString.prefix(8).lowercased()
        let (a, b) = ("inst-a-\(tag)", "inst-b-\(tag)")
        let env = ["KMSFS_HOME": box.home]
        for name in [a, b] { #expect(try Harness.run(bin, ["fs", "create", name], env: env).status == 0) }
        let second = try box.directory("mnt2")
        let viaType = try Harness.run("/bin/mount", ["-t", "kmsfs", a, box.mountpoint, "-o", "home=\(box.home)"])
        #expect(viaType.status == 0, "mount -t kmsfs: \(viaType.stderr)")
        let viaFuse = try Harness.run("/bin/mount", ["-t", "fuse.kmsfs", b, second, "-o", "home=\(box.home)"])
        #expect(viaFuse.status == 0, "mount -t fuse.kmsfs: \(viaFuse.stderr)")
        let source = try Harness.run("/usr/bin/findmnt", ["-n", "-o", "SOURCE,FSTYPE", box.mountpoint])
        #expect(source.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").filter { !$0.isEmpty } == [Substring(a), "fuse.kmsfs"],
                "the mount table names the filesystem as the user did: \(source.stdout)")
        #expect(try Harness.run("/bin/umount", [a]).status == 0, "umount NAME")
        #expect(try Harness.run(bin, ["umount", b], env: env).status == 0, "kmsfs umount NAME")

        // An fstab, mounted by `mount -a`, twice: the second is a no-op, not "busy".
        let fstab = box.root + "/fstab"
        try "\(a)  \(box.mountpoint)  kmsfs  defaults,nofail,_netdev,x-systemd.requires=network-online.target,home=\(box.home)  0 0\n"
            .write(toFile: fstab, atomically: false, encoding: .utf8)
        for round in 1...2 {
            let all = try Harness.run("/bin/mount", ["-a", "-T", fstab])
            #expect(all.status == 0, "mount -a, round \(round): \(all.status) \(all.stderr)")
        }
        let list = try Harness.run(bin, ["fs", "list", "--json"], env: env)
        let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: String]] ?? []
        #expect(rows.first { $0["name"] == a }?["mounted"] == box.mountpoint, "\(list.stdout)")
        #expect(try Harness.run(bin, ["umount", box.mountpoint], env: env).status == 0)

        // Uninstall removes what install put there, and only that.
        let sentinel = prefix + "/share/man/man1/not-ours.1"
        try "keep".write(toFile: sentinel, atomically: false, encoding: .utf8)
        let remove = try Harness.run("/bin/bash", [Harness.packageRoot + "/scripts/install.sh", "--uninstall", "--prefix", prefix])
        uninstalled = true
        #expect(remove.status == 0, "\(remove.stderr)")
        for path in [bin, "/sbin/mount.kmsfs", "/sbin/mount.fuse.kmsfs", prefix + "/share/man/man1/kmsfs.1", completion, prefix + "/lib/systemd"] {
            #expect(!FileManager.default.fileExists(atPath: path) && (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) == nil, "\(path) is left")
        }
        #expect(FileManager.default.fileExists(atPath: sentinel), "uninstall removed a file it did not install")
    }
}

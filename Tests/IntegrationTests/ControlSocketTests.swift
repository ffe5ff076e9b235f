import Foundation
import Testing

/// A local user must not be able to stop, impersonate or answer for another
/// user's mount daemon: not by taking its control socket's name, and not by
/// making a FUSE mount that looks like it in the mount table.
@Suite struct ControlSocketTests {
    /// The name the old control socket used in the abstract namespace, derivable by anyone.
    func oldAbstractName(_ storeRoot: String) throws -> String {
        let r = try Harness.run("/usr/bin/python3", ["-c", "import hashlib,os,sys; print('kmsfs-control-' + hashlib.sha256(os.path.realpath(sys.argv[1]).encode()).hexdigest()[:32])", storeRoot])
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func squattingTheControlSocketStopsNothing() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        let name = try oldAbstractName(box.store)
        // nobody binds the derivable name first and holds it, answering anyone with a lie.
        let squatter = try Harness.launch("/usr/sbin/runuser", ["-u", "nobody", "--", "/usr/bin/python3", "-c", """
            import socket
            s = socket.socket(socket.AF_UNIX); s.bind("\\0\(name)"); s.listen(4); s.settimeout(30)
            while True:
                c, _ = s.accept(); c.sendall(b"OK 1\\n"); c.close()
            """])
        defer { squatter.terminate() }  // runuser passes SIGTERM on; the squatter also quits after 30 s idle
        usleep(300_000)
        try box.mount()
        #expect(try box.kmsfs("snapshot", "create", "demo", "s1").status == 0, "snapshot through the real daemon")
        #expect(try box.kmsfs("snapshot", "list", "demo").stdout.contains("s1"))
        var st = stat()
        #expect(stat(box.store + "/control", &st) == 0 && st.st_mode & 0o077 == 0 && st.st_uid == 0, "the socket file is private")
        let connect = try asNobody("python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"\(box.store)/control\")'")
        #expect(connect.status != 0 && connect.stderr.contains("Permission denied"), "nobody reached the socket: \(connect.stderr)")
        try box.umount()
    }

    @Test func aFakeMountWithTheStoreAsItsNameIsNotBelieved() throws {
        guard Harness.fuseAvailable() else { return }
        let box = try Sandbox()
        try box.create()
        chmod(box.root, 0o755)
        let hello = box.root + "/hello", fake = try box.directory("fake")
        #expect(chown(fake, 65534, 65534) == 0)
        let cc = try Harness.shell("cc -o \(hello) /usr/share/doc/libfuse3-dev/examples/hello.c $(pkg-config --cflags --libs fuse3)")
        try #require(cc.status == 0, "building libfuse's hello example: \(cc.stderr)")
        try FuseDevice.openToAll {
            // nobody's FUSE mount, named and typed like the real one (source = the filesystem's name).
            // Through a wrapper that closes inherited descriptors: Foundation's Process waits until no
            // process holds its internal ones, and hello stays behind as a daemon.
            let r = try asNobody("python3 -c 'import os,sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])' \(hello) -o fsname=demo,subtype=kmsfs \(fake)")
            try #require(r.status == 0, "fake mount: \(r.stderr)")
            defer { _ = try? Harness.run("/bin/fusermount3", ["-u", "-z", fake]) }
            let mounted = try box.kmsfs("mount", "demo", box.mountpoint)
            #expect(mounted.status == 0, "the real mount was refused: \(mounted.stderr)")
            let list = try box.kmsfs("fs", "list", "--json")
            let rows = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: String]] ?? []
            #expect(rows.first?["mounted"] == box.mountpoint, "fs list must show the real mount only: \(list.stdout)")
            let byName = try box.kmsfs("umount", "demo")
            #expect(byName.status == 0, "kmsfs umount NAME: \(byName.stderr)")
            #expect(!MountInfo.isMounted(box.mountpoint) && MountInfo.isMounted(fake), "the real mount went, the fake one stays")
        }
    }
}


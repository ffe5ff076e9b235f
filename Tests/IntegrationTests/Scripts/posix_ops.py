#!/usr/bin/env python3
"""POSIX operations against a mounted directory; run by the FUSE integration
tests (and usable on any directory, e.g. ext4, to check the checks).
Prints one line per failure and ends with 'N passed, M failed'."""
import ctypes, errno, mmap, os, stat, sys, threading, time

root = sys.argv[1]
passed = failed = 0
libc = ctypes.CDLL(None, use_errno=True)


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def expect_errno(name, code, fn, *args):
    try:
        fn(*args)
        check(name, False, "no error")
    except OSError as e:
        check(name, e.errno == code, f"errno {e.errno} ({errno.errorcode.get(e.errno)}) != {errno.errorcode[code]}")


def p(*parts):
    return os.path.join(root, *parts)


def renameat2(old, new, flags):
    libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if libc.renameat2(-100, old.encode(), -100, new.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def fallocate(fd, mode, off, length):
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def data(n, seed=1):
    return bytes((i * 31 + seed * 7 + (i >> 12)) & 0xFF for i in range(n))


# --- create, write, read, partial blocks ---------------------------------
f = p("file")
with open(f, "wb") as fh:
    fh.write(data(10000))
with open(f, "rb") as fh:
    check("read back", fh.read() == data(10000))
check("size", os.stat(f).st_size == 10000)
fd = os.open(f, os.O_RDWR)
os.pwrite(fd, b"XYZ", 4094)                       # crosses a 4 KiB edge
os.pwrite(fd, b"Q" * 5000, 6000)                  # crosses and extends
os.pwrite(fd, b"A", 0)
expected = bytearray(data(10000))
expected[4094:4097] = b"XYZ"
expected[0:1] = b"A"
expected[6000:11000] = b"Q" * 5000
check("rmw at odd offsets", os.pread(fd, 20000, 0) == bytes(expected))
check("pread past EOF is empty", os.pread(fd, 10, 20000) == b"")
check("pread odd window", os.pread(fd, 4100, 4090) == bytes(expected[4090:8190]))
os.close(fd)

# --- sparse files and holes ----------------------------------------------
s = p("sparse")
fd = os.open(s, os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b"end", 50 * 1024 * 1024)
check("sparse size", os.fstat(fd).st_size == 50 * 1024 * 1024 + 3)
check("hole reads zeros", os.pread(fd, 8192, 1024 * 1024) == b"\0" * 8192)
check("sparse stays sparse", os.fstat(fd).st_blocks * 512 < 1024 * 1024, str(os.fstat(fd).st_blocks))
os.close(fd)

# --- truncate up and down --------------------------------------------------
t = p("trunc")
with open(t, "wb") as fh:
    fh.write(data(9000))
os.truncate(t, 5000)
check("truncate down size", os.stat(t).st_size == 5000)
os.truncate(t, 12000)
with open(t, "rb") as fh:
    content = fh.read()
check("truncate down then up: zeros after old end", content == data(9000)[:5000] + b"\0" * 7000)
os.truncate(t, 0)
check("truncate to zero", os.stat(t).st_size == 0)
with open(t, "r+b") as fh:
    fh.truncate(4096 * 3 + 1)
    fh.seek(0)
    check("ftruncate grows with zeros", fh.read() == b"\0" * (4096 * 3 + 1))

# --- O_APPEND, O_TRUNC, O_EXCL ----------------------------------------------
a = p("append")
with open(a, "wb") as fh:
    fh.write(b"12345")
fd = os.open(a, os.O_WRONLY | os.O_APPEND)
os.write(fd, b"67")
os.lseek(fd, 0, os.SEEK_SET)
os.write(fd, b"89")
os.close(fd)
with open(a, "rb") as fh:
    check("O_APPEND", fh.read() == b"123456789")
fd = os.open(a, os.O_WRONLY | os.O_TRUNC)
os.close(fd)
check("O_TRUNC", os.stat(a).st_size == 0)
expect_errno("O_EXCL on existing", errno.EEXIST, os.open, a, os.O_CREAT | os.O_EXCL | os.O_WRONLY)

# --- directories -------------------------------------------------------------
os.mkdir(p("d"))
os.mkdir(p("d", "sub"))
open(p("d", "f1"), "w").close()
check("mkdir nlink", os.stat(p("d")).st_nlink == 3)
check("listdir", sorted(os.listdir(p("d"))) == ["f1", "sub"])
expect_errno("rmdir non-empty", errno.ENOTEMPTY, os.rmdir, p("d"))
expect_errno("mkdir existing", errno.EEXIST, os.mkdir, p("d"))
expect_errno("unlink a directory", errno.EISDIR, os.unlink, p("d"))
expect_errno("rmdir a file", errno.ENOTDIR, os.rmdir, p("d", "f1"))
expect_errno("lookup missing", errno.ENOENT, os.stat, p("missing"))
expect_errno("file as directory", errno.ENOTDIR, os.stat, p("d", "f1", "x"))
expect_errno("name too long", errno.ENAMETOOLONG, open, p("n" * 256), "w")
open(p("n" * 255), "w").close()
check("255-byte name", os.path.exists(p("n" * 255)))
os.unlink(p("n" * 255))
many = p("many")
os.mkdir(many)
for i in range(600):
    open(os.path.join(many, f"entry-{i:04d}-" + "x" * 40), "w").close()
listed = os.listdir(many)
check("readdir of 600 entries (several batches)", len(listed) == 600 and len(set(listed)) == 600, str(len(listed)))
for name in listed[:300]:
    os.unlink(os.path.join(many, name))
check("readdir after deletes", len(os.listdir(many)) == 300)

# --- rename ---------------------------------------------------------------
open(p("r1"), "w").write("one")
open(p("r2"), "w").write("two")
os.rename(p("r1"), p("r2"))
check("rename over existing", open(p("r2")).read() == "one" and not os.path.exists(p("r1")))
open(p("r3"), "w").write("three")
expect_errno("RENAME_NOREPLACE", errno.EEXIST, renameat2, p("r3"), p("r2"), 1)
renameat2(p("r3"), p("r2"), 2)
check("RENAME_EXCHANGE", open(p("r2")).read() == "three" and open(p("r3")).read() == "one")
os.mkdir(p("e1"))
os.mkdir(p("e2"))
open(p("e2", "inside"), "w").close()
expect_errno("rename dir over non-empty dir", errno.ENOTEMPTY, os.rename, p("e1"), p("e2"))
expect_errno("rename dir over file", errno.ENOTDIR, os.rename, p("e1"), p("r2"))
expect_errno("rename file over dir", errno.EISDIR, os.rename, p("r2"), p("e1"))
expect_errno("rename dir into itself", errno.EINVAL, os.rename, p("e2"), p("e2", "deeper"))
os.rename(p("e2"), p("d", "sub", "moved"))
check("rename dir across parents", os.path.exists(p("d", "sub", "moved", "inside")))
check("nlink after dir move", os.stat(p("d", "sub")).st_nlink == 3 and os.stat(root).st_nlink >= 2)
os.rename(p("r2"), p("d", "r2"))
check("rename file across parents", open(p("d", "r2")).read() == "three")
expect_errno("rename missing", errno.ENOENT, os.rename, p("nope"), p("nope2"))

# --- hard links, symlinks, FIFOs ---------------------------------------------
open(p("h1"), "w").write("linked")
os.link(p("h1"), p("h2"))
check("link count", os.stat(p("h1")).st_nlink == 2 and os.stat(p("h1")).st_ino == os.stat(p("h2")).st_ino)
os.unlink(p("h1"))
check("data via other link", open(p("h2")).read() == "linked" and os.stat(p("h2")).st_nlink == 1)
expect_errno("hard link to dir", errno.EPERM, os.link, p("d"), p("dlink"))
os.symlink("d/r2", p("sym"))
check("readlink", os.readlink(p("sym")) == "d/r2")
check("follow symlink", open(p("sym")).read() == "three")
check("lstat symlink", stat.S_ISLNK(os.lstat(p("sym")).st_mode) and os.lstat(p("sym")).st_size == 4)
long_target = "t" * 4000
os.symlink(long_target, p("longsym"))
check("long symlink target", os.readlink(p("longsym")) == long_target)
os.mkfifo(p("fifo"))
check("mkfifo", stat.S_ISFIFO(os.stat(p("fifo")).st_mode))

def fifo_writer():
    with open(p("fifo"), "w") as w:
        w.write("through the pipe")
th = threading.Thread(target=fifo_writer)
th.start()
with open(p("fifo")) as r:
    check("fifo carries data", r.read() == "through the pipe")
th.join()

# --- unlink while open -----------------------------------------------------
u = p("unlinked-open")
fd = os.open(u, os.O_CREAT | os.O_RDWR, 0o600)
os.write(fd, data(20000, 3))
os.unlink(u)
check("unlinked file gone from namespace", not os.path.exists(u))
check("unlinked file still readable", os.pread(fd, 20000, 0) == data(20000, 3))
os.pwrite(fd, b"more", 20000)
check("unlinked file still writable", os.fstat(fd).st_size == 20004)
os.close(fd)

# --- attributes -------------------------------------------------------------
os.chmod(f, 0o640)
check("chmod", stat.S_IMODE(os.stat(f).st_mode) == 0o640)
os.chown(f, 1234, 5678)
st = os.stat(f)
check("chown", st.st_uid == 1234 and st.st_gid == 5678)
os.utime(f, ns=(1_000_000_123, 2_000_000_456))
st = os.stat(f)
check("utimens with nanoseconds", st.st_atime_ns == 1_000_000_123 and st.st_mtime_ns == 2_000_000_456, f"{st.st_atime_ns} {st.st_mtime_ns}")
before = os.stat(f).st_ctime_ns
time.sleep(0.01)
os.chmod(f, 0o600)
check("ctime moves on chmod", os.stat(f).st_ctime_ns > before)
m0 = os.stat(p("d")).st_mtime_ns
time.sleep(0.01)
open(p("d", "new"), "w").close()
check("dir mtime moves on create", os.stat(p("d")).st_mtime_ns > m0)
m1 = os.stat(f).st_mtime_ns
time.sleep(0.01)
with open(f, "r+b") as fh:
    fh.write(b"z")
check("mtime moves on write", os.stat(f).st_mtime_ns > m1)
sv = os.statvfs(root)
check("statfs", sv.f_bsize > 0 and sv.f_namemax == 255 and sv.f_blocks > 0)
check("access", os.access(f, os.R_OK | os.W_OK))
os.mkdir(p("sgid"))
os.chmod(p("sgid"), 0o2775)
os.chown(p("sgid"), 0, 4321)
os.mkdir(p("sgid", "child"))
check("setgid dir inheritance", os.stat(p("sgid", "child")).st_gid == 4321 and os.stat(p("sgid", "child")).st_mode & stat.S_ISGID)

# --- xattrs -------------------------------------------------------------------
os.setxattr(f, "user.color", b"blue")
os.setxattr(f, "user.empty", b"")
check("getxattr", os.getxattr(f, "user.color") == b"blue")
check("empty xattr", os.getxattr(f, "user.empty") == b"")
check("listxattr", sorted(os.listxattr(f)) == ["user.color", "user.empty"])
expect_errno("XATTR_CREATE on existing", errno.EEXIST, os.setxattr, f, "user.color", b"x", os.XATTR_CREATE)
expect_errno("XATTR_REPLACE on missing", errno.ENODATA, os.setxattr, f, "user.none", b"x", os.XATTR_REPLACE)
os.removexattr(f, "user.color")
expect_errno("getxattr removed", errno.ENODATA, os.getxattr, f, "user.color")
expect_errno("removexattr missing", errno.ENODATA, os.removexattr, f, "user.color")
big = bytes(range(256)) * 11
os.setxattr(p("d"), "user.big", big)
check("large xattr on a directory", os.getxattr(p("d"), "user.big") == big)

# --- fallocate ------------------------------------------------------------------
fa = p("falloc")
fd = os.open(fa, os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, data(3 * 4096 + 100, 5))
os.posix_fallocate(fd, 0, 100000)
check("fallocate extends size", os.fstat(fd).st_size == 100000)
check("fallocate keeps data", os.pread(fd, 3 * 4096 + 100, 0) == data(3 * 4096 + 100, 5))
check("fallocated range reads zeros", os.pread(fd, 1000, 50000) == b"\0" * 1000)
fallocate(fd, 0x01 | 0x02, 100, 9000)           # PUNCH_HOLE | KEEP_SIZE
expect_data = bytearray(data(3 * 4096 + 100, 5))
expect_data[100:9100] = b"\0" * 9000
check("punch hole", os.pread(fd, 3 * 4096 + 100, 0) == bytes(expect_data))
check("punch keeps size", os.fstat(fd).st_size == 100000)
fallocate(fd, 0x01, 200000, 4096)               # KEEP_SIZE
check("keep-size allocation", os.fstat(fd).st_size == 100000)
os.close(fd)

# --- mmap through the page cache -------------------------------------------------
mm = p("mmap")
with open(mm, "wb") as fh:
    fh.write(b"\0" * 3 * 4096)
with open(mm, "r+b") as fh:
    m = mmap.mmap(fh.fileno(), 0)
    m[4090:4100] = b"0123456789"
    m.flush()
    m.close()
with open(mm, "rb") as fh:
    check("mmap write visible to read", fh.read()[4090:4100] == b"0123456789")

# --- concurrent writers ------------------------------------------------------------
cw = p("concurrent")
with open(cw, "wb") as fh:
    fh.truncate(8 * 64 * 1024)

def writer(k):
    fd = os.open(cw, os.O_WRONLY)
    for i in range(64):
        os.pwrite(fd, bytes([65 + k]) * 1000, k * 64 * 1024 + i * 1000)
    os.close(fd)

threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
for th in threads:
    th.start()
for th in threads:
    th.join()
with open(cw, "rb") as fh:
    blob = fh.read()
ok = all(blob[k * 65536 + i * 1000:k * 65536 + (i + 1) * 1000] == bytes([65 + k]) * 1000 for k in range(8) for i in range(64))
check("concurrent writers to disjoint ranges", ok)

# --- fsync, fdatasync, fsync on a directory -------------------------------------
fd = os.open(f, os.O_RDWR)
os.fsync(fd)
os.fdatasync(fd)
os.close(fd)
dfd = os.open(p("d"), os.O_RDONLY)
os.fsync(dfd)
os.close(dfd)
check("fsync and fsyncdir", True)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)

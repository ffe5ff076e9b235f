#!/usr/bin/env python3
"""Differential random-operation test (the fsx/fsstress idea): one seeded
stream of POSIX operations is applied to two directories side by side (a kmsfs
mount and a reference directory on ext4), and every result, errno, file
content and attribute is compared after each step. The first mismatch is
reported with the seed and the index of the failing operation; since state is
compared after every operation, ops[0..index] is the shortest failing prefix.

  fsx.py [--seed S] [--seeds N] [--ops M] TESTED REFERENCE
Exit status 0 when every seed ran without a mismatch; prints the operation count.
"""
import argparse, ctypes, errno, mmap, os, random, shutil, stat, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE, FALLOC_ZERO_RANGE = 1, 2, 16
NAMES = ["a", "b", "c", "d", "e"]
DIRS = ["", "x", "y", "x/z"]
MAX_SIZE = 400_000


class Mismatch(Exception):
    pass


def renameat2(old, new, flags):
    if libc.renameat2(-100, old.encode(), -100, new.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def outcome(fn):
    """Runs fn; returns ('ok', value) or ('err', errno name)."""
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


class Side:
    def __init__(self, root):
        self.root = root
        self.fds = {}  # slot -> fd

    def p(self, rel):
        return os.path.join(self.root, rel) if rel else self.root


def describe_tree(side):
    """Everything observable about a tree except timestamps and inode numbers."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(side.root):
        rel_dir = os.path.relpath(dirpath, side.root)
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            entry = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0]
            if stat.S_ISREG(st.st_mode):
                with open(full, "rb") as f:
                    data = f.read()
                entry += [st.st_size, hash(data)]
                entry.append(sorted((n, os.getxattr(full, n)) for n in os.listxattr(full) if n.startswith("user.")))
            elif stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(full))
            else:
                entry.append(sorted(os.listdir(full)))
            out[rel] = entry
    return out


def run_seed(seed, ops, tested, reference, verbose=False):
    rng = random.Random(seed)
    sides = []
    for root in (tested, reference):
        work = os.path.join(root, f"fsx-{seed}")
        if os.path.exists(work):
            shutil.rmtree(work)
        os.mkdir(work)
        sides.append(Side(work))
    log = []

    def both(desc, fn, compare=True):
        results = [outcome(lambda s=s: fn(s)) for s in sides]
        log.append(desc)
        if compare and results[0] != results[1]:
            raise Mismatch(f"op {len(log) - 1}, {desc}: kmsfs {results[0]!r} != reference {results[1]!r}")
        return results[0]

    def rand_path():
        return os.path.join(rng.choice(DIRS), rng.choice(NAMES)).lstrip("/")

    def rand_bytes(n):
        return rng.randbytes(n) if rng.random() < 0.7 else bytes([rng.randrange(256)]) * n

    def rand_offset():
        return rng.choice([0, rng.randrange(MAX_SIZE), rng.randrange(8) * 4096 + rng.choice([0, 1, 4095]), rng.randrange(20000)])

    for i in range(ops):
        kind = rng.choices(
            ["open", "close", "write", "read", "truncate", "fallocate", "rename", "link", "unlink", "mkdir", "rmdir",
             "symlink", "chmod", "utime", "xattr", "fsync", "mmap", "stat", "compare"],
            weights=[8, 5, 14, 10, 5, 4, 5, 3, 4, 2, 2, 2, 2, 2, 3, 2, 3, 4, 1])[0]
        slot = rng.randrange(4)
        if kind == "open":
            path = rand_path()
            flags = os.O_RDWR | rng.choice([0, os.O_CREAT, os.O_CREAT | os.O_TRUNC, os.O_CREAT | os.O_EXCL, os.O_APPEND | os.O_CREAT])
            def do(s, path=path, flags=flags):
                if slot in s.fds:
                    os.close(s.fds.pop(slot))
                s.fds[slot] = os.open(s.p(path), flags, 0o644)
                return True
            both(f"open {path} flags={flags:#o} slot={slot}", do)
        elif kind == "close":
            both(f"close slot={slot}", lambda s: os.close(s.fds.pop(slot)) if slot in s.fds else None)
        elif kind == "write":
            off, data = rand_offset(), rand_bytes(rng.choice([1, 17, 4096, 4097, 8191, rng.randrange(1, 70000)]))
            both(f"pwrite slot={slot} off={off} len={len(data)}",
                 lambda s: os.pwrite(s.fds[slot], data, off) if slot in s.fds else "closed")
        elif kind == "read":
            off, n = rand_offset(), rng.choice([1, 4096, 5000, rng.randrange(1, 100000)])
            both(f"pread slot={slot} off={off} len={n}", lambda s: hash(os.pread(s.fds[slot], n, off)) if slot in s.fds else "closed")
        elif kind == "truncate":
            size = rng.choice([0, rng.randrange(MAX_SIZE), rng.randrange(10) * 4096 + rng.randrange(3)])
            both(f"ftruncate slot={slot} size={size}", lambda s: os.ftruncate(s.fds[slot], size) if slot in s.fds else "closed")
        elif kind == "fallocate":
            mode = rng.choice([0, FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, FALLOC_ZERO_RANGE])
            off, n = rand_offset(), rng.randrange(1, 50000)
            both(f"fallocate slot={slot} mode={mode} off={off} len={n}",
                 lambda s: fallocate(s.fds[slot], mode, off, n) if slot in s.fds else "closed")
        elif kind == "rename":
            a, b = rand_path(), rand_path()
            flags = rng.choice([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])
            both(f"rename {a} -> {b} flags={flags}", lambda s: renameat2(s.p(a), s.p(b), flags))
        elif kind == "link":
            a, b = rand_path(), rand_path()
            both(f"link {a} {b}", lambda s: os.link(s.p(a), s.p(b), follow_symlinks=False))
        elif kind == "unlink":
            path = rand_path()
            both(f"unlink {path}", lambda s: os.unlink(s.p(path)))
        elif kind == "mkdir":
            d = rng.choice(DIRS[1:])
            both(f"mkdir {d}", lambda s: os.mkdir(s.p(d), 0o755))
        elif kind == "rmdir":
            d = rng.choice(DIRS[1:])
            both(f"rmdir {d}", lambda s: os.rmdir(s.p(d)))
        elif kind == "symlink":
            target, path = rng.choice(NAMES + ["../a", "nowhere", "x/z/b"]), rand_path()
            both(f"symlink {target} {path}", lambda s: os.symlink(target, s.p(path)))
        elif kind == "chmod":
            path, mode = rand_path(), rng.choice([0o600, 0o644, 0o755, 0o400])
            both(f"chmod {path} {mode:o}", lambda s: os.chmod(s.p(path), mode, follow_symlinks=False) if not os.path.islink(s.p(path)) else None)
        elif kind == "utime":
            path, t = rand_path(), (rng.randrange(2**31), rng.randrange(2**31) * 10**9 + rng.randrange(10**9))
            both(f"utime {path} {t}", lambda s: (os.utime(s.p(path), ns=(t[0] * 10**9, t[1])), os.stat(s.p(path)).st_mtime_ns)[1])
        elif kind == "xattr":
            path, name, value = rand_path(), "user." + rng.choice(["k1", "k2"]), rand_bytes(rng.randrange(0, 300))
            op = rng.choice(["set", "get", "remove", "list"])
            if op == "set":
                both(f"setxattr {path} {name} {len(value)}", lambda s: os.setxattr(s.p(path), name, value, follow_symlinks=False))
            elif op == "get":
                both(f"getxattr {path} {name}", lambda s: os.getxattr(s.p(path), name, follow_symlinks=False))
            elif op == "remove":
                both(f"removexattr {path} {name}", lambda s: os.removexattr(s.p(path), name, follow_symlinks=False))
            else:
                both(f"listxattr {path}", lambda s: sorted(n for n in os.listxattr(s.p(path), follow_symlinks=False) if n.startswith("user.")))
        elif kind == "fsync":
            both(f"fsync slot={slot}", lambda s: os.fsync(s.fds[slot]) if slot in s.fds else "closed")
        elif kind == "mmap":
            off, data = rng.randrange(0, 3) * 4096, rand_bytes(rng.randrange(1, 6000))
            def do(s, off=off, data=data):
                if slot not in s.fds:
                    return "closed"
                size = os.fstat(s.fds[slot]).st_size
                if size < off + len(data):
                    return "short"
                with mmap.mmap(s.fds[slot], size) as m:
                    before = hash(m[off:off + len(data)])
                    m[off:off + len(data)] = data
                    m.flush()
                    return before
            both(f"mmap slot={slot} off={off} len={len(data)}", do)
        elif kind == "stat":
            path = rand_path()
            both(f"stat {path}", lambda s: (lambda st: (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                                                       st.st_nlink if not stat.S_ISDIR(st.st_mode) else 0))(os.lstat(s.p(path))))
        if kind == "compare" or i == ops - 1:
            trees = [describe_tree(s) for s in sides]
            log.append("compare trees")
            if trees[0] != trees[1]:
                diff = sorted(k for k in set(trees[0]) | set(trees[1]) if trees[0].get(k) != trees[1].get(k))
                raise Mismatch(f"op {len(log) - 1}, trees differ at {diff[:5]}: kmsfs {[trees[0].get(k) for k in diff[:2]]} reference {[trees[1].get(k) for k in diff[:2]]}")
    for s in sides:
        for fd in s.fds.values():
            os.close(fd)
        shutil.rmtree(s.root)
    return len(log)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("tested")
    ap.add_argument("reference")
    args = ap.parse_args()
    total = 0
    for seed in range(args.seed, args.seed + args.seeds):
        try:
            total += run_seed(seed, args.ops, args.tested, args.reference)
        except Mismatch as e:
            print(f"MISMATCH seed {seed}: {e}")
            print(f"reproduce: {sys.argv[0]} --seed {seed} --ops {args.ops} TESTED REFERENCE")
            sys.exit(1)
    print(f"{args.seeds} seeds, {total} operations, no mismatch")


if __name__ == "__main__":
    main()

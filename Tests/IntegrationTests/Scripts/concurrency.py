#!/usr/bin/env python3
"""Concurrent writers and namespace changes on one directory (the tested
mount; running it on ext4 checks the checks). Prints 'ok ...' or the first
failure and exits 1.
  - 4 processes write disjoint, unaligned ranges of one file (ranges share
    4 KiB blocks, so the filesystem's read-modify-write must be serialized);
    the result is exact.
  - 4 processes write overlapping ranges; every byte must come from one of
    the writers (no zeros inside the written span, no garbage).
  - 4 processes create, write, rename and unlink files in one directory;
    the final listing is exactly the expected one.
"""
import multiprocessing as mp, os, sys

root = sys.argv[1]
WRITERS, ROUNDS = 4, 60


def disjoint(i, path):
    fd = os.open(path, os.O_WRONLY)
    for r in range(ROUNDS):
        # Writer i owns bytes [k*4*1000 + i*1000, +1000) of every 4000-byte stripe: stripes cross 4 KiB blocks.
        for k in range(r % 7, 300, 7):
            os.pwrite(fd, bytes([i + 1]) * 1000, k * 4000 + i * 1000)
    os.fsync(fd)
    os.close(fd)


def overlapping(i, path):
    fd = os.open(path, os.O_WRONLY)
    for r in range(ROUNDS):
        off = (r * 7919 + i * 3001) % 200_000
        os.pwrite(fd, bytes([0x10 + i]) * 9000, off)
    os.close(fd)


def names(i, d):
    for r in range(ROUNDS):
        tmp, final = f"{d}/tmp-{i}-{r}", f"{d}/file-{i}-{r}"
        with open(tmp, "wb") as f:
            f.write(bytes([i]) * (r * 37))
        os.rename(tmp, final)
        if r % 3 == 0:
            os.unlink(final)


def run(target, *args):
    procs = [mp.Process(target=target, args=(i,) + args) for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit(f"FAIL {target.__name__}: writer exited {p.exitcode}")


def main():
    path = os.path.join(root, "shared-disjoint")
    with open(path, "wb") as f:
        f.truncate(300 * 4000)
    run(disjoint, path)
    data = open(path, "rb").read()
    expected = b"".join(bytes([i + 1]) * 1000 for i in range(WRITERS)) * 300
    if data != expected:
        first = next(k for k in range(len(expected)) if k >= len(data) or data[k] != expected[k])
        sys.exit(f"FAIL disjoint writers: first difference at byte {first}")

    path = os.path.join(root, "shared-overlap")
    open(path, "wb").close()
    run(overlapping, path)
    data = open(path, "rb").read()
    written = set()
    for i in range(WRITERS):
        for r in range(ROUNDS):
            off = (r * 7919 + i * 3001) % 200_000
            written.update(range(off, off + 9000))
    allowed = {0x10 + i for i in range(WRITERS)}
    for k in range(len(data)):
        if (k in written and data[k] not in allowed) or (k not in written and data[k] != 0):
            sys.exit(f"FAIL overlapping writers: byte {k} is {data[k]:#x}")
    if len(data) != max(written) + 1:
        sys.exit(f"FAIL overlapping writers: size {len(data)} != {max(written) + 1}")

    d = os.path.join(root, "names")
    os.mkdir(d)
    run(names, d)
    got = sorted(os.listdir(d))
    want = sorted(f"file-{i}-{r}" for i in range(WRITERS) for r in range(ROUNDS) if r % 3 != 0)
    if got != want:
        sys.exit(f"FAIL names: {len(got)} entries, expected {len(want)}; extra {sorted(set(got) - set(want))[:3]}, missing {sorted(set(want) - set(got))[:3]}")
    for n in got:
        i, r = map(int, n.split("-")[1:])
        if open(os.path.join(d, n), "rb").read() != bytes([i]) * (r * 37):
            sys.exit(f"FAIL names: content of {n}")
    print(f"ok: {WRITERS} disjoint + {WRITERS} overlapping writers, {len(want)} files renamed into one directory")


if __name__ == "__main__":
    main()

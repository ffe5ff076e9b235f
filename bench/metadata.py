#!/usr/bin/env python3
"""Metadata job: create, stat and unlink N small files in a tree of 100
directories under DIR. Prints operations per second (3 N / elapsed)."""
import os, sys, time

root, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20000
base = os.path.join(root, "meta")
os.makedirs(base, exist_ok=True)
dirs = [os.path.join(base, f"d{i:03d}") for i in range(100)]
t0 = time.monotonic()
for d in dirs:
    os.mkdir(d)
paths = [os.path.join(dirs[i % 100], f"file-{i:06d}") for i in range(n)]
for p in paths:
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"x" * 100)
    os.close(fd)
for p in paths:
    os.stat(p)
for p in paths:
    os.unlink(p)
for d in dirs:
    os.rmdir(d)
elapsed = time.monotonic() - t0
os.rmdir(base)
print(f"{3 * n / elapsed:.1f}")

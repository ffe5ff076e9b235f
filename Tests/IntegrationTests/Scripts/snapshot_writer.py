#!/usr/bin/env python3
"""A writer that keeps a mounted filesystem busy while a snapshot is taken,
and a checker that proves what a snapshot holds is one point in time.

  snapshot_writer.py write DIR STOPFILE   runs until STOPFILE exists
  snapshot_writer.py check DIR            checks a (snapshot) tree, prints a JSON summary

Every write is one 4096-byte record, followed by fsync, so the filesystem
sees the records in order:
- log0, log1: appended records; record i holds sequence number i.
- ring: 64 records rewritten in place, generation after generation; record j
  of generation g holds (g, j). At any point in time the ring has a single
  cut: records before it are of generation g+1, the rest of generation g.
- churn/: files created, truncated and deleted, so the snapshot's copy of
  them must survive later deletes and truncations.
"""
import hashlib, json, os, sys

RECORD = 4096


def record(kind, a, b):
    head = f"{kind}:{a:012d}:{b:06d}:".encode()
    body = hashlib.sha256(head).hexdigest().encode()
    return (head + body * (RECORD // len(body) + 1))[:RECORD]


def parse(data):
    head = data[:32]
    try:
        kind, a, b, _ = head.decode().split(":", 3)
        if record(kind, int(a), int(b)) != data:
            return None
        return kind, int(a), int(b)
    except (UnicodeDecodeError, ValueError):
        return None


def write(root, stop):
    os.makedirs(root + "/churn", exist_ok=True)
    logs = [os.open(f"{root}/log{i}", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for i in range(2)]
    ring = os.open(root + "/ring", os.O_WRONLY | os.O_CREAT, 0o644)
    seq, gen, step = [0, 0], 0, 0
    for j in range(64):
        os.pwrite(ring, record("ring", 0, j), j * RECORD)
    os.fsync(ring)
    gen, j = 1, 0
    while not os.path.exists(stop):
        i = step % 2
        os.write(logs[i], record(f"log{i}", seq[i], 0))
        os.fsync(logs[i])
        seq[i] += 1
        os.pwrite(ring, record("ring", gen, j), j * RECORD)
        os.fsync(ring)
        j += 1
        if j == 64:
            gen, j = gen + 1, 0
        name = f"{root}/churn/f{step % 5}"
        if step % 7 == 0 and os.path.exists(name):
            os.unlink(name)
        elif step % 7 == 3 and os.path.exists(name):
            os.truncate(name, 0)
        else:
            with open(name, "ab") as f:
                f.write(record("churn", step, 0))
        step += 1
    for fd in logs + [ring]:
        os.close(fd)
    print(json.dumps({"log0": seq[0], "log1": seq[1], "generation": gen}))


def check(root):
    out = {"files": {}}
    for i in range(2):
        data = open(f"{root}/log{i}", "rb").read()
        assert len(data) % RECORD == 0, f"log{i}: {len(data)} bytes is not whole records"
        for n in range(len(data) // RECORD):
            got = parse(data[n * RECORD:(n + 1) * RECORD])
            assert got == (f"log{i}", n, 0), f"log{i} record {n} is {got}: torn, missing or out of order"
        out[f"log{i}"] = len(data) // RECORD
    data = open(root + "/ring", "rb").read()
    assert len(data) == 64 * RECORD, f"ring has {len(data)} bytes"
    gens = []
    for j in range(64):
        got = parse(data[j * RECORD:(j + 1) * RECORD])
        assert got is not None and got[0] == "ring" and got[2] == j, f"ring record {j} is damaged: {got}"
        gens.append(got[1])
    cut = next((j for j in range(1, 64) if gens[j] != gens[0]), 64)
    assert all(g == gens[0] for g in gens[:cut]) and all(g == gens[0] - 1 for g in gens[cut:]), f"ring is not one point in time: {gens}"
    out["ring"] = gens[0]
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out["files"][os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3])
    else:
        try:
            check(sys.argv[2])
        except AssertionError as e:
            print(f"INCONSISTENT: {e}", file=sys.stderr)
            sys.exit(1)

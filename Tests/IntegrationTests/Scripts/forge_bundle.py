#!/usr/bin/env python3
"""Forges a directory bundle the way a careful attacker would: rebuilds the
snapshot's metadata image with extra SQL, re-chunks it, names every chunk by
its new SHA-256 and recomputes the manifest's end line, so that every hash a
keyless `snapshot verify` can check is consistent.

    forge_bundle.py BUNDLE_DIR SNAPSHOT SQL [SQL...]
    forge_bundle.py BUNDLE_DIR SNAPSHOT --flip-data FILE_ID
    forge_bundle.py BUNDLE_DIR SNAPSHOT --data-from OTHER_SNAPSHOT FILE_ID
    forge_bundle.py BUNDLE_DIR SNAPSHOT --extend FILE_ID

--flip-data flips one byte of the first data chunk of file FILE_ID (16 hex
digits) and stores it as a new chunk; --data-from makes the file's chunks
those OTHER_SNAPSHOT's manifest lists for it (an older export of the same
file, whose units carry genuine tags); --extend appends an all-zero 4096-byte
chunk past the file's end and raises its manifest size to match (zero units
add nothing to a content digest). The manifest's totals and hash line are
recomputed.
"""
import hashlib
import json
import os
import sqlite3
import sys
import tempfile


def dump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


def chunk_path(bundle, digest):
    return os.path.join(bundle, "chunks", digest[:2], digest)


def file_chunks(lines, file_id):
    """The indexes of the chunk lines of file `file_id`."""
    out, inside = [], False
    for i, line in enumerate(lines[1:-1], start=1):
        record = json.loads(line)
        if "f" in record:
            inside = record["f"] == file_id
        elif "c" in record and inside:
            out.append(i)
    return out


def rewrite_end(manifest, body, end):
    end["sha256"] = hashlib.sha256("".join(body).encode()).hexdigest()
    open(manifest, "w").write("".join(body) + dump(end))


def forge_data(bundle, manifest, lines, args):
    body, end = lines[:-1], json.loads(lines[-1])
    if args[0] == "--flip-data":
        index = file_chunks(lines, args[1])[0]
        offset, length, digest = json.loads(lines[index])["c"]
        piece = bytearray(open(chunk_path(bundle, digest), "rb").read())
        piece[100] ^= 1
        digest = hashlib.sha256(piece).hexdigest()
        os.makedirs(os.path.dirname(chunk_path(bundle, digest)), exist_ok=True)
        open(chunk_path(bundle, digest), "wb").write(bytes(piece))
        body[index] = dump({"c": [offset, length, digest]})
    elif args[0] == "--extend":
        index = file_chunks(lines, args[1])[-1]
        offset, length, _ = json.loads(lines[index])["c"]
        zeros = bytes(4096)
        digest = hashlib.sha256(zeros).hexdigest()
        os.makedirs(os.path.dirname(chunk_path(bundle, digest)), exist_ok=True)
        open(chunk_path(bundle, digest), "wb").write(zeros)
        body.insert(index + 1, dump({"c": [offset + length, 4096, digest]}))
        for i, line in enumerate(body):
            record = json.loads(line)
            if record.get("f") == args[1]:
                record["size"] = offset + length + 4096
                body[i] = dump(record)
        end["end"]["chunks"] += 1
        end["end"]["bytes"] += 4096
    else:
        other = open(os.path.join(bundle, "manifests", args[1] + ".jsonl")).read().splitlines(True)
        old = [other[i] for i in file_chunks(other, args[2])]
        mine = file_chunks(lines, args[2])
        assert len(old) == len(mine), "the two exports cut the file into different numbers of chunks"
        for i, line in zip(mine, old):
            body[i] = line
    rewrite_end(manifest, body, end)


def main():
    bundle, snapshot, statements = sys.argv[1], sys.argv[2], sys.argv[3:]
    manifest = os.path.join(bundle, "manifests", snapshot + ".jsonl")
    lines = open(manifest).read().splitlines(True)
    if statements and statements[0].startswith("--"):
        forge_data(bundle, manifest, lines, statements)
        return
    header = json.loads(lines[0])
    image = b""
    for line in lines[1:-1]:
        record = json.loads(line)
        if "m" in record:
            image += open(chunk_path(bundle, record["m"][2]), "rb").read()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "meta.db")
        open(path, "wb").write(image)
        db = sqlite3.connect(path)
        for sql in statements:
            db.executescript(sql)
        db.commit()
        db.execute("VACUUM")
        db.close()
        image = open(path, "rb").read()
    size = header["chunkSize"]
    metadata = []
    for offset in range(0, len(image), size):
        piece = image[offset:offset + size]
        digest = hashlib.sha256(piece).hexdigest()
        os.makedirs(os.path.dirname(chunk_path(bundle, digest)), exist_ok=True)
        open(chunk_path(bundle, digest), "wb").write(piece)
        metadata.append(dump({"m": [offset, len(piece), digest]}))
    body = [lines[0]] + metadata + [l for l in lines[1:-1] if "m" not in json.loads(l)]
    end = json.loads(lines[-1])
    end["end"]["metadataBytes"] = len(image)
    rewrite_end(manifest, body, end)


if __name__ == "__main__":
    main()

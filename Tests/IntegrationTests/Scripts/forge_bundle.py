#!/usr/bin/env python3
"""Forges a directory bundle the way a careful attacker would: rebuilds the
snapshot's metadata image with extra SQL, re-chunks it, names every chunk by
its new SHA-256 and recomputes the manifest's end line, so that every hash a
keyless `snapshot verify` can check is consistent.

    forge_bundle.py BUNDLE_DIR SNAPSHOT SQL [SQL...]
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


def main():
    bundle, snapshot, statements = sys.argv[1], sys.argv[2], sys.argv[3:]
    manifest = os.path.join(bundle, "manifests", snapshot + ".jsonl")
    lines = open(manifest).read().splitlines(True)
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
    end["sha256"] = hashlib.sha256("".join(body).encode()).hexdigest()
    open(manifest, "w").write("".join(body) + dump(end))


if __name__ == "__main__":
    main()

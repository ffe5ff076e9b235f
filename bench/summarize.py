#!/usr/bin/env python3
"""Turns bench/run's (or bench/workload's) CSV into a Markdown table of
medians (min-max) with the ratios kmsfs/gocryptfs, kmsfs/securefs,
kmsfs/passthrough (the FUSE ceiling) and kmsfs/kmsfs-xts (what integrity
costs), and a gnuplot bar chart. For latencies and durations (units µs and
s) lower is better, so their ratios are peer/kmsfs: above 1 kmsfs is ahead."""
import csv, statistics, subprocess, sys
from collections import defaultdict

csv_path, md_path, png_path = sys.argv[1:4]
rows = list(csv.DictReader(open(csv_path)))
values = defaultdict(list)
units = {}
for r in rows:
    values[(r["job"], r["target"])].append(float(r["value"]))
    units[r["job"]] = r["unit"]
order = ["seqwrite", "seqread", "randread1", "randread2", "randwrite", "fsync", "fsync-p99", "metadata", "clone", "untar", "status", "sqlite", "rm"]
jobs = [j for j in order if any(k[0] == j for k in values)] + sorted({k[0] for k in values} - set(order))
lower_is_better = {"µs", "s"}
targets = [t for t in ["kmsfs", "kmsfs-xts", "gocryptfs", "securefs", "passthrough", "bindfs", "plain"] if any(k[1] == t for k in values)]
peers = ["gocryptfs", "securefs", "passthrough", "kmsfs-xts"]
med = {k: statistics.median(v) for k, v in values.items()}
meta = rows[0] if rows else {}
out = [f"Run {meta.get('date','?')} · commit {meta.get('commit','?')} · {meta.get('cpu','?')} · kernel {meta.get('kernel','?')} · "
       f"{len(set(r['round'] for r in rows))} rounds, interleaved\n",
       "| job | unit | " + " | ".join(targets) + " | " + " | ".join(f"kmsfs/{p}" for p in peers) + " |",
       "|---|---|" + "---|" * (len(targets) + len(peers))]
for j in jobs:
    cells = []
    for t in targets:
        v = values.get((j, t))
        digits = 2 if units[j] == "s" else 0
        cells.append(f"{statistics.median(v):.{digits}f} ({min(v):.{digits}f}–{max(v):.{digits}f})" if v else "–")
    k = med.get((j, "kmsfs"))
    better = (lambda peer: med[(j, peer)] / k) if units[j] in lower_is_better else (lambda peer: k / med[(j, peer)])
    ratios = [f"{better(peer):.2f}×" if k and med.get((j, peer)) else "–" for peer in peers]
    out.append(f"| {j} | {units[j]} | " + " | ".join(cells + ratios) + " |")
open(md_path, "w").write("\n".join(out) + "\n")
print("\n".join(out))
dat = png_path + ".dat"
with open(dat, "w") as f:
    f.write("job " + " ".join(targets) + "\n")
    for j in jobs:
        base = med.get((j, "gocryptfs")) or 1
        if units[j] in lower_is_better:  # plotted as gocryptfs / target
            f.write(j + " " + " ".join(f"{base / med[(j, t)]:.3f}" if med.get((j, t)) else "0" for t in targets) + "\n")
        else:
            f.write(j + " " + " ".join(f"{(med.get((j, t)) or 0) / base:.3f}" for t in targets) + "\n")
script = f"""set terminal png size 1000,500
set output '{png_path}'
set style data histograms
set style histogram clustered gap 1
set style fill solid border -1
set ylabel 'median relative to gocryptfs (higher is better)'
set key top left
set grid ytics
plot """ + ", ".join(f"'{dat}' using {i + 2}{':xtic(1)' if i == 0 else ''} title '{t}'" for i, t in enumerate(targets)) + """
"""
try:
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
except (OSError, subprocess.CalledProcessError) as e:
    print(f"no chart: {e}", file=sys.stderr)

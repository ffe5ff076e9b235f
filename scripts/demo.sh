#!/usr/bin/env bash
# The main job on the embedded default (local key): build kmsfs, install it
# (scripts/install.sh: /usr/local/bin/kmsfs, mount helpers, man pages,
# completions), create an encrypted filesystem "demo", mount it, use it, show
# it, and leave it mounted.
# Usage: scripts/demo.sh [mountpoint]   (default /mnt/demo; KMSFS_HOME honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product kmsfs
scripts/install.sh --binary "$(swift build -c release --show-bin-path)/kmsfs"
BIN=/usr/local/bin/kmsfs
MNT=${1:-/mnt/demo}
mkdir -p "$MNT"
"$BIN" fs list | grep -q '^demo ' || "$BIN" fs create demo
grep -qs " $MNT fuse.kmsfs " /proc/self/mountinfo || "$BIN" mount demo "$MNT"
echo "hello from kmsfs" > "$MNT/hello.txt"
cat "$MNT/hello.txt"
"$BIN" fs list
echo "demo is mounted at $MNT; unmount with: kmsfs umount demo (man kmsfs, kmsfs --help)"

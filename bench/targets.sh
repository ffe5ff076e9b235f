# Sourced by bench/run and bench/workload: mounts the benchmark targets under
# $WORK (kmsfs with the local key and integrity on, kmsfs-xts with
# --no-integrity, gocryptfs, securefs, libfuse's passthrough_ll example with
# the writeback cache, bindfs --multithreaded) beside the plain directory.
# Needs $WORK and $KMSFS; sets KMSFS_HOME.

install_targets() {
  command -v fio >/dev/null && command -v gocryptfs >/dev/null && command -v securefs >/dev/null && command -v bindfs >/dev/null \
    && command -v gnuplot >/dev/null && command -v gcc >/dev/null && command -v git >/dev/null && command -v make >/dev/null \
    && [ -f /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c ] \
    || { apt-get update -qq && apt-get install -y -qq fio gocryptfs securefs bindfs gnuplot-nox fuse3 libfuse3-dev gcc make git pkg-config >/dev/null; }
}

unmount_targets() {
  for m in "$WORK"/mnt-*; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" 2>/dev/null || true; done
}

# mount_targets: a fresh $WORK with every target mounted.
mount_targets() {
  unmount_targets; rm -rf "$WORK"
  mkdir -p "$WORK"/{plain,bindfs-src,gc-cipher,sf-cipher,pt-src,mnt-kmsfs,mnt-kmsfs-xts,mnt-gocryptfs,mnt-securefs,mnt-passthrough,mnt-bindfs}
  local examples=/usr/share/doc/libfuse3-dev/examples
  gcc -O2 -I"$examples" -o "$WORK/passthrough_ll" "$examples/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs)
  export KMSFS_HOME=$WORK/kmsfs-home
  "$KMSFS" fs create bench >/dev/null
  "$KMSFS" fs create benchxts --no-integrity >/dev/null
  "$KMSFS" mount bench "$WORK/mnt-kmsfs" --allow-other
  "$KMSFS" mount benchxts "$WORK/mnt-kmsfs-xts" --allow-other 2>/dev/null  # (its "no integrity" warning)
  echo -n benchpass > "$WORK/gc.pass"
  gocryptfs -q -init -passfile "$WORK/gc.pass" "$WORK/gc-cipher" >/dev/null 2>&1
  gocryptfs -q -passfile "$WORK/gc.pass" "$WORK/gc-cipher" "$WORK/mnt-gocryptfs" 2>/dev/null
  head -c 32 /dev/urandom > "$WORK/sf.key"
  securefs create --keyfile "$WORK/sf.key" "$WORK/sf-cipher" >/dev/null 2>&1
  securefs mount -b --keyfile "$WORK/sf.key" "$WORK/sf-cipher" "$WORK/mnt-securefs" >/dev/null 2>&1
  "$WORK/passthrough_ll" -o writeback,source="$WORK/pt-src" "$WORK/mnt-passthrough"
  bindfs --multithreaded "$WORK/bindfs-src" "$WORK/mnt-bindfs"
  local m
  for m in kmsfs kmsfs-xts gocryptfs securefs passthrough bindfs; do
    for _ in $(seq 50); do mountpoint -q "$WORK/mnt-$m" && break; sleep 0.1; done
    mountpoint -q "$WORK/mnt-$m" || { echo "bench: $m did not mount" >&2; exit 1; }
  done
}

dir_of() { case $1 in plain) echo "$WORK/plain";; *) echo "$WORK/mnt-$1";; esac; }

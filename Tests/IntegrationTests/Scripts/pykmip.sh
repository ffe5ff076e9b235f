#!/usr/bin/env bash
# Test server for the KMIP backend: PyKMIP's server on 127.0.0.1 with mutual
# TLS 1.2 and certificates made here with openssl (P-256): a CA, the server
# (SAN IP:127.0.0.1), the client kmsfs-client (EKU clientAuth), a client
# without the clientAuth EKU, and a second CA that signed nothing the server trusts.
#   pykmip.sh start DIR   -> writes DIR/env (KEY=VALUE lines) once ready
#   pykmip.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?directory}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

cert() {  # name subject extensions [ca]
  local name=$1 subj=$2 ext=$3 ca=${4:-ca}
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null
  printf '%b' "$ext" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.crt" -CAkey "$dir/$ca.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
}

case $cmd in
start)
  mkdir -p "$dir/policies"
  py=$(python_with pykmip "kmip" "pykmip==0.11.0" "cryptography<51")
  for ca in ca otherca; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=kmsfs test $ca" \
      -keyout "$dir/$ca.key" -out "$dir/$ca.crt" 2>/dev/null
  done
  cert server /CN=127.0.0.1 "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
  cert client /CN=kmsfs-client "extendedKeyUsage=clientAuth"
  cert noeku /CN=kmsfs-client "basicConstraints=CA:FALSE"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$dir/server.conf" <<CONF
[server]
hostname=127.0.0.1
port=$port
certificate_path=$dir/server.crt
key_path=$dir/server.key
ca_path=$dir/ca.crt
auth_suite=TLS1.2
policy_path=$dir/policies
enable_tls_client_auth=True
logging_level=INFO
database_path=$dir/pykmip.db
CONF
  PYTHONWARNINGS=ignore launch_detached "$dir" server.out "$(dirname "$py")/pykmip-server" -f "$dir/server.conf" -l "$dir/server.log"
  wait_ready "$dir" 60 grep -q 'Starting connection service' "$dir/server.log"
  umask 077
  cat >"$dir/env" <<ENV
KMIP_PYTHON=$py
KMIP_HOST=127.0.0.1
KMIP_PORT=$port
KMIP_CA=$dir/ca.crt
KMIP_OTHER_CA=$dir/otherca.crt
KMIP_CLIENT_CERT=$dir/client.crt
KMIP_CLIENT_KEY=$dir/client.key
KMIP_NOEKU_CERT=$dir/noeku.crt
KMIP_NOEKU_KEY=$dir/noeku.key
KMIP_PID=$(cat "$dir/pid")
ENV
  server_ready
  log "ready at 127.0.0.1:$port"
  ;;
stop)
  stop_recorded "$dir" INT  # PyKMIP stops promptly on SIGINT only
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 64 ;;
esac

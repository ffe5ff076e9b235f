#!/usr/bin/env bash
# Proves that no test server outlives what it was started for, for each start
# script named (default: pykmip.sh, whose server has child processes):
#   1. a start interrupted (SIGTERM) while waiting for the server stops it;
#   2. a stop while a client holds a connection open leaves no process;
#   3. when the process that started the server is killed by SIGKILL (it never
#      runs its stop), the server is gone within 6 s.
#   server_cleanup_test.sh [SCRIPT...]      (run by scripts/test.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
unset KMSFS_SERVER_OWNER  # each server's owner is the process that ran its start
status=0

# server_procs DIR: the live processes of the server started for DIR (tagged
# with it, or naming it on their command line as the servers' config paths do).
server_procs() {
  local p
  for p in $(pgrep -f "$1"; grep -lzs "^KMSFS_TEST_SERVER=$1\$" /proc/[0-9]*/environ | cut -d/ -f3); do
    if alive "$p" && [ "$p" != $$ ]; then echo "$p"; fi
  done | sort -u
}

# expect_gone NAME DIR SECONDS: passes if DIR's server is gone within SECONDS,
# else fails the case and kills what is left (the test leaves nothing behind).
expect_gone() {
  local left
  for _ in $(seq 1 $(($3 * 5))); do
    left=$(server_procs "$2")
    [ -n "$left" ] || { echo "ok: $1"; return 0; }
    sleep 0.2
  done
  echo "FAIL: $1: still running: $(ps -o pid=,args= -p "${left//$'\n'/,}" | cut -c1-160)" >&2
  kill -KILL $left 2>/dev/null || true
  status=1
}

# wait_file FILE: waits up to 120 s (a first start installs a venv) for FILE.
wait_file() { for _ in $(seq 1 1200); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1; }

for script in "${@:-pykmip.sh}"; do
  name=${script%.sh} dir=$(mktemp -d "/tmp/kmsfs-cleanup-$name-XXXXXX")

  # 1. Interrupted start: its trap must stop the half-started server.
  bash "$here/$script" start "$dir/interrupted" 2>/dev/null & starter=$!
  wait_file "$dir/interrupted/pid" || echo "FAIL: $name start wrote no pid" >&2
  kill -TERM $starter; wait $starter || true
  expect_gone "$name: interrupted start" "$dir/interrupted" 6

  # 2. Stop with a client connected (PyKMIP then needs KILL, and its children used to survive).
  port=$(bash "$here/$script" start "$dir/stop" 2>&1 | sed -n 's/.*ready at [a-z:/]*127\.0\.0\.1:\([0-9]*\).*/\1/p') ||
    { echo "FAIL: $name start failed" >&2; status=1; }
  python3 -c 'import socket, sys, time; s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); time.sleep(60)' "$port" &
  client=$!
  sleep 0.5
  bash "$here/$script" stop "$dir/stop"
  kill $client 2>/dev/null || true
  expect_gone "$name: stop with a client connected" "$dir/stop" 1

  # 3. The owner killed by SIGKILL: the server must not outlive it.
  bash -c 'bash "$0" start "$1" 2>/dev/null && exec sleep 600' "$here/$script" "$dir/orphan" & owner=$!
  wait_file "$dir/orphan/env" || echo "FAIL: $name start wrote no env" >&2
  kill -KILL $owner; wait $owner 2>/dev/null || true
  expect_gone "$name: owner killed by SIGKILL" "$dir/orphan" 6
  rm -rf "$dir"
done
exit $status

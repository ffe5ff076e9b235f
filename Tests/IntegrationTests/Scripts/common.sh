# Shared by the test-server scripts (sourced, not run).
log() { echo "$(basename "$0"): $*" >&2; }

# python_with NAME "IMPORTS" PIP-SPEC...: prints the absolute path of a Python that
# can import IMPORTS: python3 itself, or a venv under ~/.cache/kmsfs-test/NAME
# that is created (and the PIP-SPECs installed into) on first use.
python_with() {
  local name=$1 imports=$2; shift 2
  local venv=${XDG_CACHE_HOME:-$HOME/.cache}/kmsfs-test/$name py
  for py in python3 "$venv/bin/python"; do
    if "$py" -c "import $imports" 2>/dev/null; then command -v "$py"; return 0; fi
  done
  log "installing $* into $venv"
  python3 -m venv "$venv" && "$venv/bin/pip" install -q "$@" >&2
  "$venv/bin/python" -c "import $imports" && echo "$venv/bin/python"
}

# alive PID: whether process PID runs (a zombie, dead but not yet reaped, does not).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }  # the fields after "(comm)", which may hold spaces
  [ "${stat%% *}" != Z ]
}

# session_alive SID: whether a process of session SID still runs.
session_alive() {
  local p
  for p in $(pgrep -s "$1"); do alive "$p" && return 0; done
  return 1
}

# Every test server is tagged KMSFS_TEST_SERVER=DIR in its environment (its
# children inherit it), so a stop can tell its session from a reused pid and
# leftover_servers can find what a test left behind.
# owned SID DIR: whether session SID is the server launched for DIR.
owned() {
  local p
  for p in $(pgrep -s "$1"); do grep -qzxF "KMSFS_TEST_SERVER=$2" "/proc/$p/environ" 2>/dev/null && return 0; done
  return 1
}

# launch_detached DIR LOGNAME COMMAND...: starts COMMAND (cwd DIR) in a session of
# its own with no inherited descriptor but its log (DIR/LOGNAME), records its pid,
# which is also the session id, in DIR/pid, and stops it again if this script exits
# before calling server_ready. A caller waiting for the script (Foundation's Process
# watches an inherited socket) must not end up waiting for the server too.
# COMMAND runs under watchdog.sh, which ends the session when the owner process
# (KMSFS_SERVER_OWNER, default: whoever ran this script) is gone, even by SIGKILL.
launch_detached() {
  local dir=$1 logname=$2; shift 2
  trap "stop_recorded '$dir'" EXIT
  trap 'exit 1' INT TERM HUP  # (then the EXIT trap runs)
  KMSFS_TEST_SERVER=$dir python3 - "$dir" "$logname" "${KMSFS_SERVER_OWNER:-$PPID}" \
    "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/watchdog.sh" "$@" <<'PY'
import os, subprocess, sys
d, logname, owner, watchdog = sys.argv[1:5]
env = dict(os.environ); env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
log = open(os.path.join(d, logname), "ab")
p = subprocess.Popen(["bash", watchdog, owner] + sys.argv[5:], cwd=d, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                     close_fds=True, start_new_session=True, env=env)
open(os.path.join(d, "pid"), "w").write(str(p.pid))
PY
}

# server_ready: the start went through; the server now runs until "stop DIR" (or its owner is gone).
server_ready() { trap - EXIT INT TERM HUP; }

# wait_ready DIR SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds;
# fails, showing the server's logs, once the server has exited or after SECONDS.
wait_ready() {
  local dir=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$(cat "$dir/pid")" || break
    sleep 0.2
  done
  log "the server exited or was not ready within $seconds s; its logs:"
  tail -n 20 "$dir"/*.log "$dir"/*.out >&2 2>/dev/null || true
  return 1
}

# stop_recorded DIR [SIGNAL]: stops the session recorded in DIR/pid, if it still is
# the server launched for DIR: SIGNAL (default TERM) to each of its processes, then
# KILL to what is left after 3 s; returns once all are gone (at most 5 s more).
stop_recorded() {
  local dir=$1 sid
  sid=$(cat "$dir/pid" 2>/dev/null) || return 0
  [[ $sid =~ ^[0-9]+$ ]] && [ "$sid" -gt 1 ] || return 0  # pkill -s 0 would mean our own session
  if owned "$sid" "$dir"; then
    pkill -CONT -s "$sid" || true
    pkill "-${2:-TERM}" -s "$sid" || true
    for _ in $(seq 1 15); do session_alive "$sid" || break; sleep 0.2; done
    pkill -KILL -s "$sid" || true  # moto's server may ignore SIGTERM, PyKMIP's children do
    for _ in $(seq 1 25); do session_alive "$sid" || break; sleep 0.2; done
  fi
  rm -f "$dir/pid"
}

# leftover_servers: the test servers still running, one "pid command line" per
# line; only those of this scripts/test.sh run when KMSFS_TEST_RUN is set.
leftover_servers() {
  local file p
  for file in $(grep -lzs '^KMSFS_TEST_SERVER=' /proc/[0-9]*/environ); do
    p=${file#/proc/} p=${p%/environ}
    if [ -n "${KMSFS_TEST_RUN:-}" ]; then grep -qzxF "KMSFS_TEST_RUN=$KMSFS_TEST_RUN" "$file" 2>/dev/null || continue; fi
    alive "$p" && echo "$p $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"
  done
  return 0
}

# check_no_servers: fails, naming them, if test servers are still running a few
# seconds after the tests (time for a watchdog to end those of a killed test
# process), and kills them so the machine is clean.
check_no_servers() {
  local left
  for _ in $(seq 1 30); do
    left=$(leftover_servers)
    [ -n "$left" ] || return 0
    sleep 0.2
  done
  printf 'FAIL: the tests left these servers running (now killed):\n%s\n' "$left" >&2
  kill -KILL $(cut -d' ' -f1 <<<"$left") 2>/dev/null || true
  return 1
}

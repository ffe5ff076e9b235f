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

# launch_detached DIR LOGNAME COMMAND...: starts COMMAND in its own session with
# no inherited descriptor but its log (DIR/LOGNAME), and records its pid in DIR/pid.
# A caller waiting for the script (Foundation's Process watches an inherited
# socket) must not end up waiting for the server too.
launch_detached() {
  local dir=$1 logname=$2; shift 2
  python3 - "$dir" "$logname" "$@" <<'PY'
import os, subprocess, sys
d, logname = sys.argv[1], sys.argv[2]
env = dict(os.environ); env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
log = open(os.path.join(d, logname), "ab")
p = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True, start_new_session=True, env=env)
open(os.path.join(d, "pid"), "w").write(str(p.pid))
PY
}

# stop_recorded DIR PATTERN: stops (TERM, then KILL after 3 s) the pid in DIR/pid if its command line still matches.
stop_recorded() {
  local pid
  pid=$(cat "$1/pid" 2>/dev/null) || return 0
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)  # no pipe into grep -q: pipefail + SIGPIPE
  if [[ $cmdline == *"$2"* ]]; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 15); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true  # moto's server may ignore SIGTERM
  fi
  rm -f "$1/pid"
}

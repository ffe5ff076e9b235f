#!/usr/bin/env bash
# watchdog.sh OWNER COMMAND...: how launch_detached runs a test server. It
# becomes COMMAND (exec: same pid, the session id recorded in DIR/pid) and
# leaves a watchdog beside it in the session that ends the whole session once
# COMMAND has exited (its children would be orphans) or process OWNER (the test
# process the server is for) is gone, even if OWNER was killed by SIGKILL and
# never ran its stop.
. "$(dirname "$0")/common.sh"
owner=$1 sid=$$; shift
(
  trap '' INT TERM  # outlive the signal sent to the session, to finish with KILL
  while alive "$owner" && alive "$sid"; do sleep 0.5; done
  pkill -CONT -s "$sid"; pkill -TERM -s "$sid"
  for _ in $(seq 1 15); do alive "$sid" || break; sleep 0.2; done
  pkill -KILL -s "$sid"  # what is left, this watchdog last
) </dev/null &
exec "$@"

#!/usr/bin/env bash
# Stops exactly the processes that up.sh started (by their recorded pids), newest first.
# Data under $KC_STATE is kept, so the next 'up' is fast; 'make env-clean' removes it.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

PIDS=$KC_STATE/pids
for name in kube-scheduler kube-controller-manager kube-apiserver etcd kafka-tls redis-tls $(redis_shard_names) kafka redis; do
  f=$PIDS/$name.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop in 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
done
rm -f "$KC_STATE/env"

# Nothing the environment started may survive: look for any process still running from the
# cache's binaries or with the state directory on its command line.
left=$(ps -eo pid=,args= | grep -F -e "$KC_CACHE/bin/" -e "$KC_STATE/" | grep -v -e grep -e "down.sh" || true)
if [ -n "$left" ]; then
  printf '[env] error: processes of the environment are still running:\n%s\n' "$left" >&2
  exit 1
fi

#!/usr/bin/env bash
# Prints each service of the test environment, its pid and whether it runs. Exits 1 when any is down.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

PIDS=$KC_STATE/pids
rc=0
for name in redis $(redis_shard_names) kafka redis-tls kafka-tls etcd kube-apiserver kube-controller-manager kube-scheduler; do
  f=$PIDS/$name.pid
  if pid_alive "$f"; then
    printf '%-24s running  pid %s\n' "$name" "$(cat "$f")"
  else
    printf '%-24s stopped\n' "$name"
    rc=1
  fi
done
# The real node is optional (make node-up): shown only when it was started.
. "$(dirname "$0")/node-lib.sh"
for name in containerd kubelet; do
  f=$NODE_STATE/pids/$name.pid
  [ -f "$f" ] || continue
  if pid_alive "$f"; then
    printf '%-24s running  pid %s (node %s)\n' "$name" "$(cat "$f")" "$NODE_NAME"
  else
    printf '%-24s stopped  (node %s)\n' "$name" "$NODE_NAME"
    rc=1
  fi
done
exit $rc

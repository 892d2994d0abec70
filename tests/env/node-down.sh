#!/usr/bin/env bash
# Stops the real node (make node-down; env-down runs it too) and undoes what it changed on the
# machine, compared with what node-up.sh recorded in $NODE_STATE/before: its containers,
# mounts, cgroups, iptables chains and tables (kube-proxy's too), the bridge, sysctls, the
# paths it created; CoreDNS, the API forwarder and the `kubernetes` Service's slice.
# Then checks that nothing of it is left and fails loudly if something is.
# containerd's image store under $NODE_STATE stays, so the next node-up is fast.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node-lib.sh"

[ -d "$NODE_STATE" ] || exit 0
BIN=$KC_CACHE/bin
[ -f "$KC_STATE/env" ] && . "$KC_STATE/env"

# stop_pid NAME: TERM, then KILL after 10 s, the process recorded in $NODE_STATE/pids/NAME.pid.
stop_pid() {
  local f=$NODE_STATE/pids/$1.pid pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "$1 (pid $pid) did not stop in 10 s; killing it"; kill -KILL "$pid"; }
    log "stopped $1 (pid $pid)"
  fi
  rm -f "$f"
}

stop_pid kubelet
# kube-proxy first: it would put back the iptables rules removed below.
stop_pid kube-proxy
stop_pid coredns
stop_pid api-forwarder
# The Pods' containers outlive the kubelet: stop them through containerd while it runs.
if pid_alive "$NODE_STATE/pids/containerd.pid"; then
  for c in $("$BIN/ctr" tasks ls -q 2>/dev/null); do
    "$BIN/ctr" tasks kill -s SIGKILL "$c" >/dev/null 2>&1
  done
  for _ in $(seq 1 50); do
    [ -z "$("$BIN/ctr" tasks ls -q 2>/dev/null | head -1)" ] && break
    for c in $("$BIN/ctr" tasks ls -q 2>/dev/null); do "$BIN/ctr" tasks delete "$c" >/dev/null 2>&1; done
    sleep 0.2
  done
  for c in $("$BIN/ctr" containers ls -q 2>/dev/null); do "$BIN/ctr" containers delete "$c" >/dev/null 2>&1; done
fi
stop_pid containerd
# Shims whose container is gone exit by themselves; any left belong to this node's state.
for pid in $(pgrep -f "$BIN/containerd-shim-runc-v2" 2>/dev/null); do
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$NODE_STATE" || continue
  kill -KILL "$pid" 2>/dev/null && log "killed shim $pid"
done

# The Node object: the cluster forgets the node (its Pods go with it).
if [ -n "${KUBECONFIG:-}" ] && command -v kubectl >/dev/null; then
  kubectl delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl -n default delete endpointslice "$API_SLICE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
fi

# --- mounts: everything under the node's state and the runtime's own directories ------------
for _ in 1 2 3; do
  mounts=$(awk '{ print $5 }' /proc/self/mountinfo | grep -e "^$NODE_STATE/" -e '^/run/containerd/' -e '^/var/lib/kubelet/' | sort -r)
  [ -z "$mounts" ] && break
  for m in $mounts; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
done

before=$NODE_STATE/before
if [ -d "$before" ]; then
  # --- cgroups: the kubelet's kubepods tree, deepest first --------------------------------
  for d in $(cgroup_dirs); do
    case $(basename "$d") in kubepods | kubepods.slice | k8s.io) ;; *) continue ;; esac
    grep -qxF "$d" "$before/cgroups" && continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done

  # --- iptables: chains the node added; then tables it created and left empty -------------
  iptables_chains | grep -vxF -f "$before/chains" | while read -r fam table chain; do
    case $chain in KUBE-*) ;; *) continue ;; esac
    ipt=iptables; [ "$fam" = ip6 ] && ipt=ip6tables
    # Rules elsewhere that jump to the chain go first.
    "$ipt-save" -t "$table" 2>/dev/null | grep -e "-j $chain\b" | grep '^-A' | sed 's/^-A/-D/' \
      | while read -r rule; do eval "$ipt -t $table $rule" 2>/dev/null; done
    "$ipt" -t "$table" -F "$chain" 2>/dev/null
    "$ipt" -t "$table" -X "$chain" 2>/dev/null
  done
  nft_tables | grep -vxF -f "$before/tables" | while read -r fam table; do
    # Only a table with no rules left is the node's alone.
    if ! nft list table "$fam" "$table" 2>/dev/null | grep -qvE '^\s*(table|chain|type|policy|\}|$)'; then
      nft delete table "$fam" "$table" 2>/dev/null
    fi
  done

  # --- sysctls ----------------------------------------------------------------------------
  for s in $NODE_SYSCTLS; do
    f=$before/sysctl.$s
    [ -f "$f" ] && echo "$(cat "$f")" > "/proc/sys/${s//.//}" 2>/dev/null
  done

  # --- paths outside the node's state -----------------------------------------------------
  for p in $NODE_HOST_PATHS; do
    [ -e "$p" ] || continue
    grep -qxF "$p" "$before/paths" || rm -rf "$p"
  done
fi
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link delete "$NODE_BRIDGE"
rm -rf "$NODE_STATE/kubelet" "$NODE_STATE/pod-logs" "$NODE_STATE/containerd/state" "$NODE_STATE/env"

# --- nothing may be left --------------------------------------------------------------------
problems=()
left=$(ps -eo pid=,args= | grep -F -e "$BIN/kubelet" -e "$BIN/containerd" -e "$BIN/kube-proxy" -e "$BIN/coredns" -e "$NODE_STATE/" \
  -e "bind=$NODE_GATEWAY" | grep -v -e grep -e node-down.sh || true)
[ -n "$left" ] && problems+=("processes: $left")
m=$(awk '{ print $5 }' /proc/self/mountinfo | grep -e "^$NODE_STATE/" -e '^/run/containerd' -e '^/var/lib/kubelet' || true)
[ -n "$m" ] && problems+=("mounts: $m")
if [ -d "$before" ]; then
  c=$(cgroup_dirs | grep -vxF -f "$before/cgroups" | grep -E '/(kubepods|kubepods\.slice|k8s\.io)$' || true)
  [ -n "$c" ] && problems+=("cgroups: $c")
  ch=$(iptables_chains | grep -vxF -f "$before/chains" | grep ' KUBE-' || true)
  [ -n "$ch" ] && problems+=("iptables chains: $ch")
  for s in $NODE_SYSCTLS; do
    f=$before/sysctl.$s
    [ -f "$f" ] && [ "$(cat "/proc/sys/${s//.//}" 2>/dev/null)" != "$(cat "$f")" ] && problems+=("sysctl $s")
  done
  for p in $NODE_HOST_PATHS; do
    [ -e "$p" ] && ! grep -qxF "$p" "$before/paths" && problems+=("path $p")
  done
fi
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && problems+=("device $NODE_BRIDGE")
if [ ${#problems[@]} -gt 0 ]; then
  printf '[env] error: the node left behind: %s\n' "${problems[@]}" >&2
  exit 1
fi
rm -rf "$before"
log "node $NODE_NAME stopped; the machine is as it was"

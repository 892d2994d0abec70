#!/usr/bin/env bash
# Joins a real node to the test control plane (make node-up; env-up must have run):
# containerd 2.x with Debian's runc and CNI plugins, and a kubelet v1.37.2, registered as
# $NODE_NAME with the taint kubecrawl.io/test-node=true:NoSchedule, so only Pods that
# tolerate it land there: the real-node tests' hostNetwork Pods, and Pods of namespaces whose
# annotations add that toleration and select the node (the README's commands, as written).
#
# Pods off the host network get a pod network of their own: a bridge ($NODE_BRIDGE,
# 10.244.0.0/24) whose gateway, this machine, is their only route, and only to the Service
# range (10.0.0.0/24): no default route, so nothing leaves the machine. kube-proxy (iptables
# mode) serves the Services; CoreDNS on the bridge's address serves cluster.local; the
# `kubernetes` Service points at a forwarder on the bridge to the API server on 127.0.0.1.
#
# Everything the node changes on the machine is recorded first in $NODE_STATE/before and
# undone by node-down.sh: sysctls the kubelet sets, the paths it creates outside its own
# directories (/var/lib/kubelet/device-plugins, /var/log/containers, /run/containerd),
# iptables chains and tables, cgroups, mounts. Idempotent: a running node is left as it is.
# Writes $NODE_STATE/env (KUBECRAWL_NODE, KUBECRAWL_NODE_LOGS, CONTAINERD_ADDRESS).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node-lib.sh"

[ "$(id -u)" = 0 ] || die "a real node needs root (cgroups, mounts, containers)"
[ -f "$KC_STATE/env" ] || die "the control plane is not up: run make env-up first"
. "$KC_STATE/env"
start_all=$SECONDS

missing=()
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v buildah >/dev/null || missing+=(buildah)
command -v iptables >/dev/null || missing+=(iptables)
command -v mount >/dev/null || missing+=(mount)
command -v socat >/dev/null || missing+=(socat)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian's packages"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]}"
fi
bash "$(dirname "$0")/build-k8s.sh" kubelet
bash "$(dirname "$0")/build-node.sh"
BIN=$KC_CACHE/bin
mkdir -p "$NODE_STATE"/{pids,logs}

node_start() {
  local name=$1; shift
  setsid nohup "$@" >"$NODE_STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$NODE_STATE/pids/$name.pid"
}

if pid_alive "$NODE_STATE/pids/kubelet.pid" && pid_alive "$NODE_STATE/pids/containerd.pid"; then
  log "node $NODE_NAME already running"
  exit 0
fi

# --- what the machine looks like before the node ---------------------------------------------
if [ ! -d "$NODE_STATE/before" ]; then
  mkdir -p "$NODE_STATE/before"
  for s in $NODE_SYSCTLS; do
    cat "/proc/sys/${s//.//}" > "$NODE_STATE/before/sysctl.$s" 2>/dev/null || true
  done
  for p in $NODE_HOST_PATHS; do [ -e "$p" ] && echo "$p"; done > "$NODE_STATE/before/paths" || true
  iptables_chains > "$NODE_STATE/before/chains"
  nft_tables > "$NODE_STATE/before/tables"
  cgroup_dirs > "$NODE_STATE/before/cgroups"
fi

# --- the pod network's bridge and gateway ----------------------------------------------------
# Made here rather than by the CNI plugin at the first Pod, so that CoreDNS and the API
# forwarder can listen on its address before any Pod runs.
if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
  ip link add "$NODE_BRIDGE" type bridge || die "could not create the bridge $NODE_BRIDGE"
fi
case $(ip -4 -o addr show dev "$NODE_BRIDGE") in
  *" $NODE_GATEWAY/"*) ;;
  *) ip addr add "$NODE_GATEWAY/24" dev "$NODE_BRIDGE" ;;
esac
ip link set "$NODE_BRIDGE" up
# Routing between the bridge and the Services' DNAT (restored by node-down).
echo 1 > /proc/sys/net/ipv4/ip_forward

# --- the node's address ---------------------------------------------------------------------
# The kubelet refuses a loopback node IP. Use the machine's own first non-loopback IPv4
# address (nothing listens on it: the kubelet and the Pods bind 127.0.0.1).
node_ip=${KUBECRAWL_NODE_IP:-$(ip -4 -o addr show scope global | awk '{ sub("/.*", "", $4); print $4; exit }')}
[ -n "$node_ip" ] || die "no non-loopback IPv4 address for the node (set KUBECRAWL_NODE_IP)"

# --- credentials: the kubelet is system:node:$NODE_NAME, signed by the test CA ------------------
PKI=$KC_STATE/pki
NPKI=$NODE_STATE/pki
if [ ! -f "$NPKI/kubelet.crt" ] || ! openssl verify -CAfile "$PKI/ca.crt" "$NPKI/kubelet.crt" >/dev/null 2>&1; then
  mkdir -p "$NPKI"
  (
    cd "$NPKI"
    openssl req -newkey rsa:2048 -nodes -keyout kubelet.key -out kubelet.csr \
      -subj "/O=system:nodes/CN=system:node:$NODE_NAME"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > kubelet.ext
    openssl x509 -req -in kubelet.csr -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
      -CAserial "$NPKI/ca.srl" -days 365 -extfile kubelet.ext -out kubelet.crt
  ) >"$NODE_STATE/logs/pki.log" 2>&1 || die "kubelet certificate failed (see $NODE_STATE/logs/pki.log)"
fi
cat > "$NODE_STATE/kubelet.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: kubecrawl-test
  cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: kubelet
  user: {client-certificate: "$NPKI/kubelet.crt", client-key: "$NPKI/kubelet.key"}
contexts:
- name: kubelet
  context: {cluster: kubecrawl-test, user: kubelet}
current-context: kubelet
KCFG

# --- containerd ---------------------------------------------------------------------------
SOCK=$NODE_STATE/containerd.sock
mkdir -p "$NODE_STATE/cni/net.d" "$NODE_STATE/containerd"
# The pod network: the bridge above, the machine as gateway for the Service range only, no
# masquerade and no default route (nothing can leave the machine).
cat > "$NODE_STATE/cni/net.d/10-kubecrawl.conflist" <<CNI
{"cniVersion": "1.0.0", "name": "kubecrawl-node", "plugins": [
  {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_GATEWAY"}]],
            "routes": [{"dst": "$SERVICE_CIDR"}], "dataDir": "$NODE_STATE/cni/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
CNI
cat > "$NODE_STATE/containerd.toml" <<TOML
version = 4
root = "$NODE_STATE/containerd/root"
state = "$NODE_STATE/containerd/state"
temp = "$NODE_STATE/containerd/tmp"

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = "$SOCK"
  [plugins.'io.containerd.server.v1.ttrpc']
    address = "$SOCK.ttrpc"
  [plugins.'io.containerd.internal.v1.opt']
    path = "$NODE_STATE/containerd/opt"
  [plugins.'io.containerd.image-verifier.v1.bindir']
    bin_dir = "$NODE_STATE/containerd/image-verifier"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.runtime']
    # No CAP_SYS_RESOURCE here: a Pod may not lower its OOM score adjustment.
    restrict_oom_score_adj = true
    # Network namespaces (for Pods without hostNetwork) under the state dir, not /run/netns.
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "$(command -v runc)"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["/usr/lib/cni"]
      conf_dir = "$NODE_STATE/cni/net.d"
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
TOML
if ! pid_alive "$NODE_STATE/pids/containerd.pid"; then
  # The shim is found on PATH.
  node_start containerd env PATH="$BIN:$PATH" "$BIN/containerd" --config "$NODE_STATE/containerd.toml"
  wait_for 60 containerd ctr version || die "containerd did not start (see $NODE_STATE/logs/containerd.log)"
fi

# --- images: the sandbox's pause image, then whatever `make images` built -------------------------
if ! ctr images ls -q 2>/dev/null | grep -qxF "$PAUSE_IMAGE"; then
  pause_dir=$NODE_STATE/pause-image
  rm -rf "$pause_dir"; mkdir -p "$pause_dir/rootfs"
  cp "$BIN/pause" "$pause_dir/rootfs/pause"
  printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > "$pause_dir/Containerfile"
  buildah --storage-driver vfs bud --quiet --layers=false -f "$pause_dir/Containerfile" -t "$PAUSE_IMAGE" "$pause_dir" >/dev/null \
    || die "could not build the pause image"
  buildah --storage-driver vfs push --quiet "$PAUSE_IMAGE" "oci-archive:$pause_dir/pause.tar:$PAUSE_IMAGE" \
    || die "could not save the pause image"
  ctr images import "$pause_dir/pause.tar" >/dev/null 2>>"$NODE_STATE/logs/ctr.log" \
    || die "could not import the pause image (see $NODE_STATE/logs/ctr.log)"
fi
bash "$(dirname "$0")/dev-images.sh"
bash "$(dirname "$0")/node-images.sh"

# --- the API server, seen from the pod network ---------------------------------------------
# The API server listens on 127.0.0.1 only; Pods reach it as the `kubernetes` Service
# (10.0.0.1:443, in its certificate), whose endpoint is this forwarder on the bridge's
# address. The API server reconciles no endpoints here, so the node writes the slice.
if ! pid_alive "$NODE_STATE/pids/api-forwarder.pid"; then
  node_start api-forwarder socat "TCP-LISTEN:$APISERVER_PORT,bind=$NODE_GATEWAY,fork,reuseaddr" "TCP:127.0.0.1:$APISERVER_PORT"
fi
kubectl apply -f - >/dev/null <<YAML || die "could not write the kubernetes Service's endpoints"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $API_SLICE
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: kubecrawl-test-node}
addressType: IPv4
endpoints: [{addresses: ["$NODE_GATEWAY"], conditions: {ready: true}}]
ports: [{name: https, port: $APISERVER_PORT, protocol: TCP}]
YAML

# --- cluster DNS ------------------------------------------------------------------------------
cat > "$NODE_STATE/Corefile" <<COREFILE
.:53 {
    bind $NODE_GATEWAY
    ready 127.0.0.1:$COREDNS_READY_PORT
    errors
    # The synthetic site's hosts, served on the bridge's address by tests that crawl from Pods.
    hosts {
        $NODE_GATEWAY site.test other.test far.test
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
}
COREFILE
if ! pid_alive "$NODE_STATE/pids/coredns.pid"; then
  node_start coredns "$BIN/coredns" -conf "$NODE_STATE/Corefile"
fi
wait_for 60 coredns curl -sf "http://127.0.0.1:$COREDNS_READY_PORT/ready" \
  || die "CoreDNS did not become ready (see $NODE_STATE/logs/coredns.log)"

# --- kubelet --------------------------------------------------------------------------------
mkdir -p "$NODE_STATE/kubelet" "$NODE_STATE/pod-logs"
cat > "$NODE_STATE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Only on loopback; the API server cannot reach it, so kubectl logs/exec do not work on this
# node: the tests read $NODE_STATE/pod-logs instead.
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
# The machine has cgroup v1 controllers; 1.35+ refuses them unless told.
failCgroupV1: false
failSwapOn: false
podCIDR: $POD_CIDR
clusterDNS: [$NODE_GATEWAY]
clusterDomain: cluster.local
podLogsDir: $NODE_STATE/pod-logs
maxPods: 30
# The disk is shared with everything else: evict late, and never collect the imported images
# (nothing could pull them back).
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerWithTaints:
- {key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}
serializeImagePulls: false
shutdownGracePeriod: 0s
YAML
if ! pid_alive "$NODE_STATE/pids/kubelet.pid"; then
  node_start kubelet "$BIN/kubelet" --config "$NODE_STATE/kubelet.yaml" \
    --kubeconfig "$NODE_STATE/kubelet.kubeconfig" --root-dir "$NODE_STATE/kubelet" \
    --cert-dir "$NODE_STATE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$node_ip" \
    --node-labels "kubecrawl.io/test-node=true" --v 1
fi
node_ready() {
  [ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for 120 "node $NODE_NAME" node_ready || die "node $NODE_NAME is not Ready (see $NODE_STATE/logs/kubelet.log)"
# No node lifecycle controller runs here, so nothing lifts the taint admission put on the new
# node; the node's own taint stays.
kubectl taint node "$NODE_NAME" node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true

# --- kube-proxy: the Services, for the pod network ---------------------------------------------
# Every connection to a Service is masqueraded: the Pods share one bridge, and the answer of a
# Pod behind a Service must come back through the machine to be translated back.
cat > "$NODE_STATE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$KUBECONFIG"}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
iptables: {masqueradeAll: true, syncPeriod: 10s, minSyncPeriod: 0s}
# Leave the machine's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
nodePortAddresses: ["$NODE_GATEWAY/32"]
healthzBindAddress: 127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_METRICS_PORT
YAML
if ! pid_alive "$NODE_STATE/pids/kube-proxy.pid"; then
  node_start kube-proxy "$BIN/kube-proxy" --config "$NODE_STATE/kube-proxy.yaml" --v 1
fi
wait_for 60 kube-proxy curl -sf "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz" \
  || die "kube-proxy did not become healthy (see $NODE_STATE/logs/kube-proxy.log)"

cat > "$NODE_STATE/env" <<ENV
# Written by 'make node-up'. Source it after the environment's env file.
export KUBECRAWL_NODE=$NODE_NAME
export KUBECRAWL_NODE_TAINT=$NODE_TAINT_KEY
export KUBECRAWL_NODE_GATEWAY=$NODE_GATEWAY
export KUBECRAWL_NODE_LOGS=$NODE_STATE/pod-logs
export CONTAINERD_ADDRESS=$SOCK
ENV
log "node $NODE_NAME ($node_ip) Ready in $((SECONDS - start_all)) s; source $NODE_STATE/env"

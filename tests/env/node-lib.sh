# Shared settings of the real node (node-up.sh, node-down.sh, node-images.sh). Sourced after
# lib.sh, never run.

NODE_NAME=${KUBECRAWL_NODE_NAME:-kubecrawl-node}
# The node's state: containerd's root, the kubelet's root dir, Pod logs, configuration.
NODE_STATE=${KUBECRAWL_NODE_STATE:-$KC_STATE/node}
NODE_TAINT_KEY=kubecrawl.io/test-node
NODE_BRIDGE=kcnode0
# The pod network: the bridge's subnet, the machine's address on it (the Pods' gateway, DNS
# server and way to the API server), and the Service range the API server hands out.
POD_CIDR=10.244.0.0/24
NODE_GATEWAY=10.244.0.1
SERVICE_CIDR=10.0.0.0/24
# The EndpointSlice that points the `kubernetes` Service at the API forwarder.
API_SLICE=kubernetes-test-node
PAUSE_IMAGE=localhost/kubecrawl/pause:$PAUSE_VERSION
# Away from the kubelet's defaults (10250, 10248), on loopback only.
KUBELET_PORT=${KUBECRAWL_KUBELET_PORT:-10350}
KUBELET_HEALTHZ_PORT=${KUBECRAWL_KUBELET_HEALTHZ_PORT:-10348}
KUBE_PROXY_HEALTHZ_PORT=${KUBECRAWL_KUBE_PROXY_HEALTHZ_PORT:-10356}
KUBE_PROXY_METRICS_PORT=${KUBECRAWL_KUBE_PROXY_METRICS_PORT:-10359}
COREDNS_READY_PORT=${KUBECRAWL_COREDNS_READY_PORT:-10381}
export CONTAINERD_ADDRESS=$NODE_STATE/containerd.sock
export CONTAINERD_NAMESPACE=k8s.io

# Kernel settings the node sets (node-up: forwarding; the kubelet at start, as
# protectKernelDefaults is off; kube-proxy): node-down restores them.
NODE_SYSCTLS="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
# Paths outside $NODE_STATE that the kubelet or containerd create whatever they are told.
# Not /run/netns or /var/lib/cni: the node keeps those under $NODE_STATE, and podman (which
# others may run on the machine meanwhile) uses them.
NODE_HOST_PATHS="/var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /opt/cni /opt/containerd /opt/nri /run/nri /etc/nri /etc/kubernetes"

# iptables_chains: "family table chain" per line, for IPv4 and IPv6.
iptables_chains() {
  local fam save
  for fam in ip ip6; do
    save=iptables-save; [ "$fam" = ip6 ] && save=ip6tables-save
    command -v "$save" >/dev/null || continue
    "$save" 2>/dev/null | awk -v f="$fam" '/^\*/ { t = substr($0, 2) } /^:/ { print f, t, substr($1, 2) }'
  done
}

# nft_tables: "family table" per line.
nft_tables() {
  command -v nft >/dev/null || return 0
  nft list tables 2>/dev/null | awk '{ print $2, $3 }'
}

# cgroup_dirs: the directories at the top of every cgroup hierarchy.
cgroup_dirs() {
  find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d 2>/dev/null | sort
}

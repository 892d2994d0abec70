# Shared settings for the test environment scripts. Sourced, never run.
# Everything built or downloaded lives in $KC_CACHE, outside the repository, and is reused.
# Everything that runs keeps its state under $KC_STATE (the repository's .testenv/).

KC_CACHE=${KUBECRAWL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubecrawl}
KC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KC_STATE=${KUBECRAWL_STATE:-$KC_ROOT/.testenv}

# Versions of the test tooling. Changing one rebuilds only that tool.
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.0
HELM_VERSION=v4.3.1
KAFKA_VERSION=4.2.0
LOG4J_VERSION=2.25.2
# Scrapy Cluster's Kafka client, for the wire-format tests (build-python.sh).
KAFKA_PYTHON_VERSION=3.0.12
# The independent WARC reader that checks the worker's WARC files (build-python.sh).
WARCIO_VERSION=1.8.1
# The real node (build-node.sh): containerd from the Go module proxy, our own pause image.
CONTAINERD_VERSION=v2.4.2
REGISTRY_VERSION=v3.1.2
COREDNS_VERSION=v1.15.0
PAUSE_VERSION=1

# Fixed loopback ports, chosen away from the usual defaults so that a developer's own
# services on 6379/9092/6443/2379 are never touched.
REDIS_PORT=${KUBECRAWL_REDIS_PORT:-16379}
KAFKA_PORT=${KUBECRAWL_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KUBECRAWL_KAFKA_CONTROLLER_PORT:-19093}
# TLS and authentication (tls.sh): a TLS-only Redis with an ACL user, and a second Kafka
# node whose clients must use SASL_SSL (SCRAM, PLAIN) or SSL with a client certificate.
REDIS_TLS_PORT=${KUBECRAWL_REDIS_TLS_PORT:-16380}
# Three independent Redis servers (a frontier's shards) and a Redis Cluster of three primaries
# (redis-shards.sh); a cluster node also listens on its port + 10000 (the cluster bus).
REDIS_SHARD_PORTS=${KUBECRAWL_REDIS_SHARD_PORTS:-16381 16382 16383}
REDIS_CLUSTER_PORTS=${KUBECRAWL_REDIS_CLUSTER_PORTS:-16391 16392 16393}
# The names of the Redis shard and cluster processes, as their pid files are named.
redis_shard_names() {
  local i=0 p
  for p in $REDIS_SHARD_PORTS; do i=$((i + 1)); printf 'redis-shard%s ' "$i"; done
  i=0
  for p in $REDIS_CLUSTER_PORTS; do i=$((i + 1)); printf 'redis-cluster%s ' "$i"; done
}
KAFKA_SASL_PORT=${KUBECRAWL_KAFKA_SASL_PORT:-19094}
KAFKA_MTLS_PORT=${KUBECRAWL_KAFKA_MTLS_PORT:-19095}
KAFKA_TLS_INTERNAL_PORT=${KUBECRAWL_KAFKA_TLS_INTERNAL_PORT:-19096}
KAFKA_TLS_CONTROLLER_PORT=${KUBECRAWL_KAFKA_TLS_CONTROLLER_PORT:-19097}
ETCD_PORT=${KUBECRAWL_ETCD_PORT:-12379}
ETCD_PEER_PORT=${KUBECRAWL_ETCD_PEER_PORT:-12380}
APISERVER_PORT=${KUBECRAWL_APISERVER_PORT:-16443}

export GOMODCACHE=$KC_CACHE/go/mod
export GOCACHE=$KC_CACHE/go/build
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS=-buildvcs=false

log() { printf '[env] %s\n' "$*" >&2; }
die() { printf '[env] error: %s\n' "$*" >&2; exit 1; }

# pid_alive FILE: true when FILE names a running process.
pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# wait_for SECONDS WHAT CMD...: poll CMD every 0.2 s until it succeeds or time runs out.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
  log "$what ready"
}

# stamp_ok NAME VERSION: true when $KC_CACHE/bin/NAME was built at VERSION (build-*.sh).
stamp_ok() { [ -x "$KC_CACHE/bin/$1" ] && [ "$(cat "$KC_CACHE/bin/.$1.version" 2>/dev/null)" = "$2" ]; }
# stamp NAME VERSION: records that $KC_CACHE/bin/NAME was built at VERSION.
stamp() { echo "$2" > "$KC_CACHE/bin/.$1.version"; }

#!/usr/bin/env bash
# Runs one more kube-apiserver in the foreground, on its own port, against the etcd of the
# environment up.sh started (same storage: it serves the same cluster as the shared API
# server), for a test that must restart an API server without disturbing anyone else.
#
#   apiserver-node.sh DIR PORT
#
# Uses the environment's PKI ($KC_STATE/pki; KC_STATE is the directory of $KUBECONFIG when
# that is set) and keeps its generated certificates in DIR. The API server's process
# replaces this script's (exec), so the caller's pid is the API server's.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || die "usage: apiserver-node.sh DIR PORT"
dir=$1 port=$2
if [ -n "${KUBECONFIG:-}" ]; then KC_STATE=$(dirname "$KUBECONFIG"); fi
PKI=$KC_STATE/pki
[ -f "$PKI/sa.key" ] || die "no PKI in $PKI: run make env-up first"
BIN=$KC_CACHE/bin
mkdir -p "$dir"
exec "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
  --secure-port="$port" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" --cert-dir="$dir/certs" \
  --enable-admission-plugins=PodNodeSelector,PodTolerationRestriction

#!/usr/bin/env bash
# Builds the Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), etcd and helm from the Go module proxy into $KC_CACHE/bin; with
# the argument `kubelet` (node-up.sh), the kubelet and kube-proxy too, from the same Go module.
# Each binary is built only when it is missing or its version changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIN=$KC_CACHE/bin
mkdir -p "$BIN" "$KC_CACHE/src"

# --- Kubernetes ------------------------------------------------------------------------
k8s_needed=()
k8s_wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
[ "${1:-}" = kubelet ] && k8s_wanted+=(kubelet kube-proxy)
for b in "${k8s_wanted[@]}"; do
  stamp_ok "$b" "$K8S_VERSION" || k8s_needed+=("$b")
done
if [ ${#k8s_needed[@]} -gt 0 ]; then
  mod=$KC_CACHE/src/k8s-$K8S_VERSION
  # Every command the module builds, whether or not this run builds it: one `go mod tidy`
  # covers them all. A module made before a command joined the list is tidied again.
  tools='//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)'
  if [ ! -f "$mod/.tidy" ]; then
    log "preparing the Go module for kubernetes $K8S_VERSION"
    rm -rf "$mod"; mkdir -p "$mod"
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
    staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9.-]*\) => ./staging/src/k8s.io/.*#\1#p' "$gomod")
    [ -n "$staging" ] || die "no staging modules found in $gomod"
    minor=${K8S_VERSION#v1.}
    {
      echo "module kubecrawl.test/k8s"
      echo
      sed -n 's/^go \(.*\)/go \1/p' "$gomod" | head -1
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      for m in $staging; do echo "replace $m => $m v0.$minor"; done
    } > "$mod/go.mod"
  fi
  if [ ! -f "$mod/.tidy" ] || [ "$(cat "$mod/tools.go" 2>/dev/null)" != "$tools" ]; then
    printf '%s\n' "$tools" > "$mod/tools.go"
    (cd "$mod" && go mod tidy -e >/dev/null) || die "go mod tidy failed for kubernetes"
    touch "$mod/.tidy"
  fi
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
  done
  for b in "${k8s_needed[@]}"; do
    log "building $b $K8S_VERSION (minutes when cold)"
    start=$SECONDS
    (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b")
    stamp "$b" "$K8S_VERSION"
    log "built $b in $((SECONDS - start)) s"
  done
fi

# --- etcd ------------------------------------------------------------------------------
if ! stamp_ok etcd "$ETCD_VERSION"; then
  mod=$KC_CACHE/src/etcd-$ETCD_VERSION
  rm -rf "$mod"; mkdir -p "$mod"
  cat > "$mod/go.mod" <<GOMOD
module kubecrawl.test/etcd

go 1.24
GOMOD
  cat > "$mod/main.go" <<'GO'
// Command etcd runs the etcd server for kubecrawl's tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd $ETCD_VERSION"
  start=$SECONDS
  (cd "$mod" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 \
    && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .) || die "etcd build failed"
  stamp etcd "$ETCD_VERSION"
  log "built etcd in $((SECONDS - start)) s"
fi

# --- helm ------------------------------------------------------------------------------
if ! stamp_ok helm "$HELM_VERSION"; then
  log "building helm $HELM_VERSION (minutes when cold)"
  start=$SECONDS
  GOBIN=$BIN go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" \
    || die "helm build failed"
  stamp helm "$HELM_VERSION"
  log "built helm in $((SECONDS - start)) s"
fi
log "kubernetes tooling in $BIN"

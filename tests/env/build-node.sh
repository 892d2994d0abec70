#!/usr/bin/env bash
# Builds what a real node of the test environment runs, from the Go module proxy into
# $KC_CACHE/bin: containerd with its runc shim and ctr, a static pause program for the Pod
# sandbox image, the CNCF distribution registry (for `make push` tests) and CoreDNS (the
# node's cluster DNS, with only the plugins it uses). kubelet and kube-proxy come from
# build-k8s.sh, out of the same Go module as the control plane. runc and the CNI
# plugins are Debian's. Each binary is built only when it is missing or its version changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIN=$KC_CACHE/bin
mkdir -p "$BIN" "$KC_CACHE/src"

# --- containerd ------------------------------------------------------------------------
# btrfs, devmapper and zfs snapshotters need cgo or tools the node never uses: overlayfs
# and native are enough.
if ! stamp_ok containerd "$CONTAINERD_VERSION" || ! stamp_ok ctr "$CONTAINERD_VERSION" \
  || ! stamp_ok containerd-shim-runc-v2 "$CONTAINERD_VERSION"; then
  log "building containerd $CONTAINERD_VERSION (minutes when cold)"
  start=$SECONDS
  for b in containerd containerd-shim-runc-v2 ctr; do
    GOBIN=$BIN go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
      -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
      "github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION" || die "$b build failed"
    stamp "$b" "$CONTAINERD_VERSION"
  done
  log "built containerd in $((SECONDS - start)) s"
fi

# --- pause -----------------------------------------------------------------------------
# The Pod sandbox image must be local (nothing is pulled), so the node gets a pause program of
# its own: it sleeps until SIGTERM or SIGINT and reaps nothing, as the Pods share no PID
# namespace.
if ! stamp_ok pause "$PAUSE_VERSION"; then
  mod=$KC_CACHE/src/pause
  rm -rf "$mod"; mkdir -p "$mod"
  printf 'module kubecrawl.test/pause\n\ngo 1.24\n' > "$mod/go.mod"
  cat > "$mod/main.go" <<'GO'
// Command pause holds a Pod sandbox's namespaces open until it is told to stop.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
GO
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$BIN/pause" .) || die "pause build failed"
  stamp pause "$PAUSE_VERSION"
fi

# --- the distribution registry -----------------------------------------------------------
if ! stamp_ok registry "$REGISTRY_VERSION"; then
  log "building the distribution registry $REGISTRY_VERSION"
  start=$SECONDS
  GOBIN=$BIN go install -trimpath -ldflags "-s -w" \
    "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION" || die "registry build failed"
  stamp registry "$REGISTRY_VERSION"
  log "built registry in $((SECONDS - start)) s"
fi
# --- CoreDNS ---------------------------------------------------------------------------
# The node's cluster DNS: Service and Pod names from the API server (kubernetes plugin) and
# fixed test names (hosts plugin); nothing is forwarded out. Built with only those plugins,
# which the directives list below orders, instead of CoreDNS's fifty.
if ! stamp_ok coredns "$COREDNS_VERSION"; then
  mod=$KC_CACHE/src/coredns-$COREDNS_VERSION
  rm -rf "$mod"; mkdir -p "$mod"
  printf 'module kubecrawl.test/coredns\n\ngo 1.26\n' > "$mod/go.mod"
  cat > "$mod/main.go" <<'GO'
// Command coredns is CoreDNS with the few plugins the test node's cluster DNS uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order in which a query passes the plugins of a server block.
	dnsserver.Directives = []string{"bind", "ready", "errors", "log", "hosts", "kubernetes"}
}

func main() { coremain.Run() }
GO
  log "building coredns $COREDNS_VERSION"
  start=$SECONDS
  (cd "$mod" && go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1 && go mod tidy >/dev/null 2>&1 \
    && go build -trimpath -ldflags "-s -w" -o "$BIN/coredns" .) || die "coredns build failed"
  stamp coredns "$COREDNS_VERSION"
  log "built coredns in $((SECONDS - start)) s"
fi
log "node tooling in $BIN"

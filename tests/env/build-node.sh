#!/usr/bin/env bash
# Builds what a real node of the test environment runs, from the Go module proxy into
# $KC_CACHE/bin: containerd with its runc shim and ctr, a static pause program for the Pod
# sandbox image, and the CNCF distribution registry (for `make push` tests). kubelet comes
# from build-k8s.sh, out of the same Go module as the control plane. runc and the CNI
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
log "node tooling in $BIN"

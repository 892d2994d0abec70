#!/usr/bin/env bash
# `make push-check`: `make push` against a real OCI registry on 127.0.0.1 (the CNCF
# distribution registry, built from the Go module proxy by build-node.sh), then every image
# pulled back by the digest the push reported, and its manifest digest and config compared
# with the local image. The registry is started for the check and stopped after it, by pid.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bash "$(dirname "$0")/build-node.sh"
command -v skopeo >/dev/null || {
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq skopeo >/dev/null
} || die "could not install skopeo"

port=${KUBECRAWL_REGISTRY_PORT:-15000}
dir=$(mktemp -d)
mkdir -p "$dir/pulled"
cat > "$dir/config.yml" <<YAML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $dir/data}
http:
  addr: 127.0.0.1:$port
YAML
OTEL_TRACES_EXPORTER=none setsid "$KC_CACHE/bin/registry" serve "$dir/config.yml" >"$dir/registry.log" 2>&1 < /dev/null &
pid=$!
cleanup() {
  local rc=$?
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$dir"
  exit "$rc"
}
trap cleanup EXIT
wait_for 30 registry curl -sf "http://127.0.0.1:$port/v2/" || { cat "$dir/registry.log" >&2; die "the registry did not start"; }

start=$SECONDS
pushed=$(REGISTRY=127.0.0.1:$port/kubecrawl TLS_VERIFY=false bash "$(dirname "$0")/../../docker/push.sh")
echo "$pushed"
n=0
while read -r name ref; do
  # Pulled back by digest, into an OCI layout of its own: the registry serves what was pushed.
  skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$dir/pulled/$name:check" \
    || die "could not pull $ref back"
  want=${ref#*@}
  got=$(skopeo inspect --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$want" ] || die "$ref: the registry served a manifest with digest sha256:$got"
  label=$(skopeo inspect --config "oci:$dir/pulled/$name:check" | jq -r '.config.Labels["org.opencontainers.image.revision"]')
  [ -n "$label" ] && [ "$label" != null ] || die "$ref: no revision label after the round trip"
  n=$((n + 1))
done <<<"$pushed"
[ "$n" -gt 0 ] || die "nothing was pushed"
log "pushed $n images to 127.0.0.1:$port and pulled each back by digest in $((SECONDS - start)) s"

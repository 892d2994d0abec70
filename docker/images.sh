#!/usr/bin/env bash
# `make images`: builds kubecrawl's images with no Docker daemon and no registry.
#
# A release build of the binaries on this (Debian bookworm) host, docker/rootfs.sh lays out
# each image's files, then buildah builds the image's own Dockerfile with ROOTFS=rootfs-local
# (the Rust build stage is skipped, nothing is pulled). Each image lands in the local
# containers store (buildah/podman, vfs driver) and as an OCI archive in $IMAGES_DIR.
#
#   IMAGE_PREFIX  where the names point (default ghcr.io/kubecrawl, where releases go)
#   IMAGE_TAG     the tag (default: the workspace version)
#   IMAGES        which images (default: all five)
#   IMAGES_DIR    where the OCI archives go (default $KUBECRAWL_CACHE/images)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KUBECRAWL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubecrawl}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
prefix=${IMAGE_PREFIX:-ghcr.io/kubecrawl}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
tag=${IMAGE_TAG:-$version}
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]; then revision=$revision-dirty; fi
out=${IMAGES_DIR:-$cache/images}
images=${IMAGES:-kubecrawl-operator kubecrawl-worker kubecrawl-render-worker kubecrawl titles-worker}

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

# image NAME: "package binary dockerfile aliases".
spec() {
  case $1 in
    kubecrawl-operator) echo "kubecrawl-operator kubecrawl-operator docker/operator.Dockerfile" ;;
    kubecrawl-worker) echo "kubecrawl-worker kubecrawl-worker docker/worker.Dockerfile" ;;
    kubecrawl-render-worker) echo "kubecrawl-worker kubecrawl-worker docker/render-worker.Dockerfile" ;;
    kubecrawl) echo "kubecrawl-cli kubecrawl docker/cli.Dockerfile" ;;
    titles-worker) echo "kubecrawl-example-spider titles-worker examples/custom-spider/Dockerfile kubecrawl-worker" ;;
    *) die "unknown image $1" ;;
  esac
}

if ! command -v buildah >/dev/null; then
  log "installing buildah from Debian's packages"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah runc >/dev/null \
    || die "could not install buildah"
fi
[ -f /etc/ssl/certs/ca-certificates.crt ] || die "install ca-certificates first"
# The render worker's image carries the browser of this machine's package.
browser=/usr/lib/chromium/chromium-headless-shell
if [[ " $images " == *" kubecrawl-render-worker "* ]] && [ ! -x "$browser" ]; then
  log "installing chromium-headless-shell from Debian's packages"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null \
    || die "could not install chromium-headless-shell"
fi

pkgs=()
for i in $images; do read -r p _ <<<"$(spec "$i")"; pkgs+=(-p "$p"); done
log "release build of ${pkgs[*]}"
start=$SECONDS
(cd "$root" && cargo build --release --locked "${pkgs[@]}") || die "release build failed"
log "release build in $((SECONDS - start)) s"

mkdir -p "$out"
work=$(mktemp -d)
# Untagged images in buildah's store (the stage that lays out the files, and the image a new
# tag replaces), and the working containers a failed build leaves, which pin their images:
# those this run leaves are removed when it ends, or every run would leave about 135 MB
# behind (a vfs store copies every layer in full), and a failed one gigabytes.
dangling() { buildah --storage-driver vfs images --filter dangling=true --noheading --format '{{.ID}}' 2>/dev/null | sort -u; }
working() { buildah --storage-driver vfs containers --noheading --format '{{.ContainerID}}' 2>/dev/null | sort -u; }
dangling_before=$(dangling)
working_before=$(working)
tidy() {
  comm -13 <(echo "$working_before") <(working) | xargs -r buildah --storage-driver vfs rm >/dev/null 2>&1 || true
  comm -13 <(echo "$dangling_before") <(dangling) | xargs -r buildah --storage-driver vfs rmi >/dev/null 2>&1 \
    || log "warning: could not remove the untagged images this build left"
  rm -rf "$work"
}
trap tidy EXIT
for i in $images; do
  read -r _ bin dockerfile aliases <<<"$(spec "$i")"
  ref=$prefix/$i:$tag
  # shellcheck disable=SC2086 # aliases is a word list
  with_browser=
  [ "$i" = kubecrawl-render-worker ] && with_browser=$browser
  ROOTFS_BROWSER=$with_browser bash "$root/docker/rootfs.sh" "$CARGO_TARGET_DIR/release/$bin" "$work/$i/rootfs" $aliases
  buildah --storage-driver vfs bud --quiet --layers=false --build-arg ROOTFS=rootfs-local \
    --build-arg VERSION="$tag" --build-arg REVISION="$revision" \
    -f "$root/$dockerfile" -t "$ref" "$work/$i" >/dev/null || die "buildah could not build $ref"
  # What the image promises, checked on what was built: the user, the labels, no shell.
  config=$(buildah --storage-driver vfs inspect --type image --format '{{.OCIv1.Config.User}} {{index .OCIv1.Config.Labels "org.opencontainers.image.version"}} {{index .OCIv1.Config.Labels "org.opencontainers.image.revision"}} {{index .OCIv1.Config.Labels "org.opencontainers.image.source"}}' "$ref")
  [ "$config" = "65532:65532 $tag $revision https://github.com/kubecrawl/kubecrawl" ] \
    || die "$ref: unexpected user or labels: $config"
  [ ! -e "$work/$i/rootfs/bin/sh" ] && [ ! -e "$work/$i/rootfs/usr/bin/sh" ] || die "$ref has a shell"
  rm -f "$out/$i.tar"
  buildah --storage-driver vfs push --quiet "$ref" "oci-archive:$out/$i.tar:$ref" \
    || die "could not write $out/$i.tar"
  log "$ref: $(du -h "$out/$i.tar" | cut -f1) OCI archive ($out/$i.tar), $(du -sh "$work/$i/rootfs" | cut -f1) unpacked"
done

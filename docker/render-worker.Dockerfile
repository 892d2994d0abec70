# The kubecrawl render worker's image: the worker (built-in spiders link and wandering) and
# Debian's headless Chromium (`chromium-headless-shell`), for fleets with `render: true`.
# FROM scratch: the release binary, the browser's directory, exactly the shared libraries both
# link (and NSS's modules), fontconfig and fonts, CA certificates and the numeric user 65532.
# No shell or package manager. The root filesystem can be read-only; the browser writes its
# profile under /tmp, which the operator mounts as an emptyDir. Build from the repository root:
#   docker build -f docker/render-worker.Dockerfile -t my-registry/kubecrawl-render-worker:0.1.0 .
#
# `make images` builds this same file with buildah and ROOTFS=rootfs-local, from a rootfs/
# that docker/rootfs.sh made on the host with ROOTFS_BROWSER set; nothing is pulled then.
ARG ROOTFS=rootfs-build

FROM docker.io/library/rust:1.95-bookworm AS rootfs-build
WORKDIR /src
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium-headless-shell fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubecrawl-worker --bin kubecrawl-worker \
    && ROOTFS_BROWSER=/usr/lib/chromium/chromium-headless-shell docker/rootfs.sh target/release/kubecrawl-worker /rootfs

FROM scratch AS rootfs-local
COPY rootfs/ /rootfs/

FROM ${ROOTFS} AS rootfs

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kubecrawl-render-worker" \
      org.opencontainers.image.description="kubecrawl crawler worker with headless Chromium, for render fleets" \
      org.opencontainers.image.source="https://github.com/kubecrawl/kubecrawl" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    KUBECRAWL_BROWSER=/usr/lib/chromium/chromium-headless-shell HOME=/tmp
# The restricted Pod Security Standard: a numeric non-root user.
USER 65532:65532
ENTRYPOINT ["kubecrawl-worker"]

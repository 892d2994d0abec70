# The kubecrawl worker's (built-in spiders link and wandering) image.
# FROM scratch: the release binary, exactly the shared libraries it links (glibc, OpenSSL,
# zlib, ...), CA certificates and the numeric user 65532. No shell or package manager; the
# root filesystem can be read-only. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t my-registry/kubecrawl-worker:0.1.0 .
#
# The rootfs stage is chosen by ROOTFS. The default compiles in a Rust image and lays the
# files out with docker/rootfs.sh. `make images` builds this same file with buildah and
# ROOTFS=rootfs-local, from a context holding rootfs/ that the same script made from a
# release build on the host; nothing is pulled then.
ARG ROOTFS=rootfs-build

FROM docker.io/library/rust:1.95-bookworm AS rootfs-build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubecrawl-worker --bin kubecrawl-worker \
    && docker/rootfs.sh target/release/kubecrawl-worker /rootfs

FROM scratch AS rootfs-local
COPY rootfs/ /rootfs/

FROM ${ROOTFS} AS rootfs

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kubecrawl-worker" \
      org.opencontainers.image.description="kubecrawl crawler worker with the built-in spiders" \
      org.opencontainers.image.source="https://github.com/kubecrawl/kubecrawl" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=rootfs /rootfs/ /
ENV PATH=/usr/local/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The restricted Pod Security Standard: a numeric non-root user.
USER 65532:65532
ENTRYPOINT ["kubecrawl-worker"]

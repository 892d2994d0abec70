# kubecrawl-worker image (built-in spiders `link` and `wandering`). Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t kubecrawl-worker .
# A worker with custom spiders builds its own binary the same way: see examples/custom-spider.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubecrawl-worker \
    && cp target/release/kubecrawl-worker /kubecrawl-worker

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /kubecrawl-worker /usr/local/bin/kubecrawl-worker
# The restricted Pod Security Standard: a numeric non-root user. The worker writes nothing
# to disk, so the root filesystem can be read-only.
USER 65532:65532
ENTRYPOINT ["kubecrawl-worker"]

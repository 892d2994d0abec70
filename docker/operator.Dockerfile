# kubecrawl-operator image. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t kubecrawl-operator .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kubecrawl-operator \
    && cp target/release/kubecrawl-operator /kubecrawl-operator

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /kubecrawl-operator /usr/local/bin/kubecrawl-operator
# The restricted Pod Security Standard: a numeric non-root user.
USER 65532:65532
ENTRYPOINT ["kubecrawl-operator"]

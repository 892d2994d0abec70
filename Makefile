# kubecrawl's developer commands. `make test` is the one command that runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Build outputs are shared between checkouts and kept outside the repository, so that a fresh
# clone reuses compiled dependencies. Override with CARGO_TARGET_DIR.
KUBECRAWL_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/kubecrawl
export CARGO_TARGET_DIR ?= $(KUBECRAWL_CACHE)/target
# The environment file env-up writes (KUBECRAWL_STATE moves it, e.g. to share one environment).
ENV := . $(or $(KUBECRAWL_STATE),.testenv)/env &&
# The real node's env file (make node-up; KUBECRAWL_NODE_STATE moves it).
NODE_ENV := $(or $(KUBECRAWL_NODE_STATE),$(or $(KUBECRAWL_STATE),.testenv)/node)/env

.PHONY: help env-up env-down env-status env-clean test unit lint crds bench-frontier bench-crawl bench-scale bench-compression bench-sitemap bench-extract bench-recrawl bench-render \
	profile-crawl images push push-check prune-target node-up node-down node-images test-node chaos chaos-hot

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

env-up: ## start Redis, Kafka, etcd and the Kubernetes control plane on 127.0.0.1 (idempotent); NODE=1 joins the real node too
	@bash tests/env/up.sh
	@if [ -n "$(NODE)" ]; then bash tests/env/node-up.sh; fi

env-down: ## stop every process env-up started (and the real node, if node-up started one)
	@bash tests/env/node-down.sh
	@bash tests/env/down.sh

env-status: ## show which test services run
	@bash tests/env/status.sh

env-clean: env-down ## stop the services and delete their data (.testenv)
	rm -rf .testenv

test: env-up ## bring the environment up and run every test of the workspace against it
	cargo build --workspace --bins --locked
	$(ENV) cargo test --workspace --locked --no-fail-fast

unit: ## the tests that need no services
	cargo test --workspace --locked --lib --bins

lint: ## rustfmt and clippy, as CI runs them
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

images: ## build the operator, worker, cli and example-spider images with buildah (no Docker, no registry)
	@bash docker/images.sh

push: ## push the images to REGISTRY (e.g. make push REGISTRY=ghcr.io/me); prints each digest
	@bash docker/push.sh

prune-target: ## drop older builds of the test binaries and the workspace's crates from the shared target dir
	@bash tests/env/prune-target.sh

push-check: ## push the images to a local registry on 127.0.0.1 and pull them back by digest
	@bash tests/env/push-check.sh

node-up: env-up ## join a real node (kubelet, containerd, runc) to the test control plane
	@bash tests/env/node-up.sh

node-down: ## stop the real node and undo what it changed on the machine
	@bash tests/env/node-down.sh

node-images: ## import the images from `make images` into the real node's containerd
	@bash tests/env/node-images.sh

test-node: images node-up ## the tests that need the real node: the chart and the README's cluster commands on it, crawl, drain
	bash tests/env/node-images.sh
	$(ENV) . $(NODE_ENV) && cargo test -p kubecrawl-operator --test node --locked -- --ignored --nocapture
	$(ENV) . $(NODE_ENV) && cargo test -p kubecrawl-e2e --test docs --locked -- --ignored --nocapture readme_cluster_commands_run_on_the_real_node

crds: ## regenerate crds/ (and the chart's copy) from the Rust types
	cargo run -q -p kubecrawl-api --bin crdgen > crds/crawljobs.kubecrawl.io.yaml
	cp crds/crawljobs.kubecrawl.io.yaml charts/kubecrawl/crds/

bench-frontier: env-up ## frontier throughput and memory against the real Redis; last line is JSON
	$(ENV) cargo bench -p kubecrawl-frontier --bench frontier --locked

bench-scale: env-up ## 1, 2, 4 and 8 workers on a latency-bound site of 256 hosts through Redis and Kafka; last line is JSON (BENCH_SHARDED=1: on three Redis shards)
	$(ENV) bash tests/bench/scale.sh

bench-sitemap: ## what reading a full-size sitemap (50,000 URLs) costs, plain and gzipped; no services; last line is JSON
	cargo bench -p kubecrawl-worker --bench sitemap --locked

bench-compression: env-up ## what each Kafka compression codec costs on real HTML pages (CPU, bytes); last line is JSON
	$(ENV) bash tests/bench/compression.sh

bench-extract: ## what extract rules (a declarative spider) cost a standalone crawl of 15 KB pages: 3 runs with and without; last line is JSON
	bash tests/bench/extract.sh

bench-recrawl: env-up ## a recrawl round of an unchanged 20,000-page site (304s) next to the first crawl, standalone on Redis; last line is JSON
	$(ENV) bash tests/bench/recrawl.sh

bench-render: ## pages/s and memory per browser context rendering with headless Chromium, and auto's overhead on a site that needs no rendering; last line is JSON
	bash tests/bench/render.sh

profile-crawl: ## where a standalone crawl of 15 KB pages spends its CPU: perf's top entries (WORKER_BIN= to profile another build)
	bash tests/bench/profile.sh

bench-crawl: env-up ## crawl a 20,000-page local site standalone and on Redis + Kafka, at three page sizes; a JSON line per size
	$(ENV) bash tests/bench/crawl.sh
	$(ENV) BENCH_PADDING=12000 BENCH_LINKS=48 bash tests/bench/crawl.sh
	$(ENV) BENCH_PADDING=57000 BENCH_LINKS=48 bash tests/bench/crawl.sh

chaos: env-up ## crawl 20,000 pages through worker, Redis, Kafka, API-server, operator and network faults; last line is JSON (CHAOS_SEED=n replays; CHAOS_ARGS="--help")
	cargo build --locked -p kubecrawl-worker -p kubecrawl-operator -p kubecrawl-e2e --bins
	$(ENV) "$(CARGO_TARGET_DIR)/debug/chaos" $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) $(CHAOS_ARGS)

chaos-hot: env-up ## the chaos suite without politeness (up to ~140 requests in flight) and without the operator: Redis, Kafka and kill faults bite harder
	cargo build --locked -p kubecrawl-worker -p kubecrawl-e2e --bins
	$(ENV) "$(CARGO_TARGET_DIR)/debug/chaos" --no-operator --delay 0ms \
	  --faults worker_kill=6,redis_restart=2,redis_reset=3,redis_drop=2,redis_stall=2,kafka_kill=1,kafka_drop=1,kafka_stall=1,kafka_reset=1 \
	  $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) $(CHAOS_ARGS)

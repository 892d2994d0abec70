#!/usr/bin/env bash
# `make bench-scale`: does throughput grow with the number of workers? 1, 2, 4 and 8
# kubecrawl-worker processes crawl a latency-bound site of many hosts (farmsite: 256 hosts,
# every answer held 50 ms) through the real Redis frontier (REDIS_URL, or REDIS_SHARD_URLS with
# BENCH_SHARDED=1) and the real Kafka (KAFKA_BROKERS), each worker with --concurrency 16, so one
# worker is bound by its fetches in flight, not by CPU. With N workers the job has a maxPages of
# N × BENCH_PAGES_PER_WORKER (default 2500), so each run lasts about as long.
#
# Prints one line per N, then, as its last line, one JSON object: per N, pages/s, the
# speed-up over one worker and its efficiency (speed-up / N), the workers' CPU per 1000 pages,
# the CPU of Redis, and how busy the whole machine was (from /proc/stat; 100 = every core).
#
# Each run: `kubecrawl-worker crawl --redis --kafka` registers and seeds the job and crawls,
# N - 1 `kubecrawl-worker run` join it; the run ends when the crawl process sees the job
# finished. Every page is published to Kafka before its lease is acknowledged. Cleans up its
# own Redis keys, topics, processes (by pid) and files.
set -euo pipefail

cd "$(dirname "$0")/../.."
: "${REDIS_URL:?REDIS_URL is not set: run make bench-scale (or make env-up and . .testenv/env)}"
: "${KAFKA_BROKERS:?KAFKA_BROKERS is not set: run make bench-scale}"
: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run make bench-scale}"
PER_WORKER=${BENCH_PAGES_PER_WORKER:-2500}
COUNTS=${BENCH_WORKERS:-1 2 4 8}
CONCURRENCY=16
if [ "${BENCH_SHARDED:-0}" = 1 ]; then
  : "${REDIS_SHARD_URLS:?REDIS_SHARD_URLS is not set}"
  FRONTIER=$REDIS_SHARD_URLS
else
  FRONTIER=$REDIS_URL
fi

say() { printf '[bench-scale] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

say "building release binaries"
cargo build --release --locked -q -p kubecrawl-worker -p kubecrawl-e2e \
  --bin kubecrawl-worker --bin farmsite
BIN=$CARGO_TARGET_DIR/release
KAFKA_LIB=$(. tests/env/lib.sh && echo "$KC_CACHE/kafka-$KAFKA_VERSION/lib")

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kubecrawl-bench-scale.XXXXXX")
RUN=kcbench-scale-$$-$(date +%s)
FARM_PID=
WORKER_PIDS=()
cleanup() {
  for pid in "${WORKER_PIDS[@]}" $FARM_PID; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; fi
  done
  WORKER_PIDS=()
  FARM_PID=
  local url
  for url in ${FRONTIER//,/ }; do
    redis-cli -u "$url" --scan --pattern "$RUN*" |
      xargs -r -n 500 redis-cli -u "$url" del >/dev/null || say "warning: deleting redis keys failed"
  done
  if [ -d "$KAFKA_LIB" ]; then
    local topics
    topics=$(java -cp "$KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
      --list 2>/dev/null | grep "^$RUN" || true)
    for t in $topics; do
      java -cp "$KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
        --delete --if-exists --topic "$t" >/dev/null 2>&1 || say "warning: deleting topic $t failed"
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_of() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}
redis_cpu() {
  local url total=0 c
  for url in ${FRONTIER//,/ }; do
    c=$(redis-cli -u "$url" INFO cpu | tr -d '\r' |
      awk -F: '/^used_cpu_(sys|user):/ { t += $2 } END { printf "%.2f", t }')
    total=$(awk -v a="$total" -v b="$c" 'BEGIN { printf "%.2f", a + b }')
  done
  echo "$total"
}
# busy and total jiffies of the whole machine so far
machine() { awk '/^cpu / { idle = $5 + $6; t = 0; for (i = 2; i <= NF; i++) t += $i; print t - idle, t }' /proc/stat; }

"$BIN/farmsite" --hosts 256 --pages 100 --latency 50ms >"$WORK/farm.json" 2>"$WORK/farm.log" &
FARM_PID=$!
for _ in $(seq 100); do [ -s "$WORK/farm.json" ] && break; sleep 0.1; done
[ -s "$WORK/farm.json" ] || die "farmsite did not start: $(cat "$WORK/farm.log")"
ROOT=$(jq -r .root "$WORK/farm.json")
ADDR=$(jq -r .addr "$WORK/farm.json")
IP=${ADDR%:*}
RESOLVE=$(jq -r --arg ip "$IP" '[.hosts[] | "\(.)=\($ip)"] | join(",")' "$WORK/farm.json")
say "farm $ROOT: $(jq -r .pages "$WORK/farm.json") pages on 256 hosts, 50 ms per answer; frontier $FRONTIER"

COMMON=(--allow-private-networks --concurrency "$CONCURRENCY" --per-host-concurrency 2)
results=()
for n in $COUNTS; do
  prefix=$RUN-$n
  max=$((n * PER_WORKER))
  busy0=($(machine)); redis0=$(redis_cpu)
  start=$(date +%s.%N)
  KUBECRAWL_RESOLVE=$RESOLVE /usr/bin/time -f '%e %U %S' -o "$WORK/crawl-$n.time" \
    "$BIN/kubecrawl-worker" crawl "$ROOT" --crawlid "scale-$n" --maxdepth 1000 --max-pages "$max" \
    --allowed-domain farm.test --delay 0s --no-progress --log warn "${COMMON[@]}" \
    --redis "$FRONTIER" --redis-prefix "$prefix" --kafka "$KAFKA_BROKERS" --topic-prefix "$prefix" \
    >/dev/null 2>"$WORK/crawl-$n.log" &
  crawl_pid=$!
  WORKER_PIDS=("$crawl_pid")
  sleep 0.3
  for i in $(seq 2 "$n"); do
    KUBECRAWL_RESOLVE=$RESOLVE "$BIN/kubecrawl-worker" run --spider link --redis-url "$FRONTIER" \
      --redis-prefix "$prefix" --kafka-brokers "$KAFKA_BROKERS" --topic-prefix "$prefix" \
      --metrics-addr 127.0.0.1:0 --worker-name "bench-$i" --log warn "${COMMON[@]}" \
      >/dev/null 2>"$WORK/run-$n-$i.log" &
    WORKER_PIDS+=($!)
  done
  wait "$crawl_pid" || die "the crawl with $n workers failed: $(tail -5 "$WORK/crawl-$n.log")"
  end=$(date +%s.%N)
  busy1=($(machine)); redis1=$(redis_cpu)
  others=0
  for pid in "${WORKER_PIDS[@]:1}"; do
    others=$(awk -v a="$others" -v b="$(cpu_of "$pid")" 'BEGIN { printf "%.2f", a + b }')
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  done
  WORKER_PIDS=()
  read -r _ c_user c_sys <"$WORK/crawl-$n.time"
  pages=$(sed -nE 's/^finished [^:]+: ([0-9]+) pages.*/\1/p' "$WORK/crawl-$n.log" | tail -1)
  [ -n "$pages" ] || die "no summary from the crawl with $n workers: $(tail -5 "$WORK/crawl-$n.log")"
  [ "$pages" -eq "$max" ] || die "the crawl with $n workers fetched $pages pages, not $max"
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
  line=$(jq -cn --argjson n "$n" --argjson pages "$pages" --argjson wall "$wall" \
    --argjson wcpu "$(awk -v a="$c_user" -v b="$c_sys" -v c="$others" 'BEGIN { print a + b + c }')" \
    --argjson rcpu "$(awk -v a="$redis0" -v b="$redis1" 'BEGIN { print b - a }')" \
    --argjson busy "$(awk -v b0="${busy0[0]}" -v t0="${busy0[1]}" -v b1="${busy1[0]}" -v t1="${busy1[1]}" \
      'BEGIN { printf "%.1f", 100 * (b1 - b0) / (t1 - t0) }')" '
    def r(k): (. * k | round) / k;
    { workers: $n, pages: $pages, seconds: $wall, pages_per_s: ($pages / $wall | r(10)),
      worker_cpu_s_per_1000_pages: ($wcpu / $pages * 1000 | r(1000)),
      redis_cpu_s_per_1000_pages: ($rcpu / $pages * 1000 | r(1000)),
      machine_busy_percent: $busy }')
  say "$line"
  results+=("$line")
done

result=$(printf '%s\n' "${results[@]}" | jq -cs '
  (.[0].pages_per_s) as $one
  | { runs: map(. + { speedup: (.pages_per_s / $one * 100 | round / 100),
                      efficiency: (.pages_per_s / $one / .workers * 100 | round / 100) }) }')
cleanup
trap - EXIT
echo "$result"

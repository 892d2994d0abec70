#!/usr/bin/env bash
# `make bench-crawl`: crawl throughput of kubecrawl-worker against the synthetic test site on
# 127.0.0.1, with release binaries. Prints what it does, then, as its last line, one JSON
# object:
#
# - standalone_pages_per_s: `kubecrawl-worker crawl` (in-memory frontier, JSON lines to a
#   file), pages over the crawler process's wall time, start-up and final flush included.
# - standalone_cpu_s_per_1000_pages: user + system CPU of that crawler process per 1000 pages.
# - standalone_peak_rss_mb: its peak resident memory.
# - distributed_pages_per_s: one worker on the real Redis frontier (REDIS_URL) publishing to
#   the real Kafka (KAFKA_BROKERS), each lease acknowledged only after Kafka confirmed its
#   record: `kubecrawl-worker crawl --redis --kafka`, pages over wall time.
# - pages, site_cpu_s (the site's CPU during the standalone crawl), distributed_cpu_s_per_1000_pages.
# - redis_cpu_s_per_1000_pages and kafka_cpu_s_per_1000_pages: the Redis server's (INFO cpu)
#   and the test environment's Kafka broker's CPU during the distributed crawl, per 1000 pages
#   (null for a broker this script cannot see): what the distributed path costs beside the
#   worker, on the same cores.
#
# Both crawls must find the site's whole ground truth, or the bench fails. The site, the
# crawler and Redis/Kafka share the machine, so the figures include their cost.
# Cleans up after itself: stops the site it started (by pid), deletes the Redis keys of its own
# unique prefix, its Kafka topic and its files.
#
# Settings: BENCH_BIN (a directory with release builds of kubecrawl-worker and testsite to run
# instead of building them: a target directory shared by several checkouts holds one
# kubecrawl-worker, which another checkout's build can replace mid-run), BENCH_PAGES (default 20000), BENCH_CONCURRENCY (the crawler's --concurrency and
# --per-host-concurrency; default: the crawler's own defaults), BENCH_PADDING (bytes of text
# per page, the site's --padding; default 256, pages of about 800 bytes) and BENCH_LINKS (most
# links from one page to others, the site's --max-links; default 8). `make bench-crawl` runs
# three sizes: the default, about 15 KB with 48 links, about 60 KB with 48 links. The JSON
# also carries page_bytes (the size of one page's HTML) and links (BENCH_LINKS).
# BENCH_WARC=1: both crawls also write WARC files (--warc-dir, into the bench's own temporary
# directory; BENCH_WARC_GZIP_LEVEL sets --warc-gzip-level); the JSON then carries warc_bytes
# (the standalone crawl's files) and warc_gzip_level, and the standalone crawl's WARC files
# must hold one response record per page.
set -euo pipefail

cd "$(dirname "$0")/../.."
. tests/bench/site.sh
: "${REDIS_URL:?REDIS_URL is not set: run make bench-crawl (or make env-up and . .testenv/env)}"
: "${KAFKA_BROKERS:?KAFKA_BROKERS is not set: run make bench-crawl (or make env-up and . .testenv/env)}"
: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run make bench-crawl}"
PAGES=${BENCH_PAGES:-20000}
PADDING=${BENCH_PADDING:-256}
LINKS=${BENCH_LINKS:-8}

say() { printf '[bench-crawl] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
  say "using the binaries in $BIN"
else
  say "building release binaries"
  cargo build --release --locked -q -p kubecrawl-worker -p kubecrawl-e2e \
    --bin kubecrawl-worker --bin testsite
  BIN=$CARGO_TARGET_DIR/release
fi
[ -x "$BIN/kubecrawl-worker" ] && [ -x "$BIN/testsite" ] || die "no kubecrawl-worker and testsite in $BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kubecrawl-bench-crawl.XXXXXX")
RUN=kcbench-crawl-$$-$(date +%s)
TOPIC=$RUN.crawled_firehose
SITE_PID=
cleanup() {
  if [ -n "$SITE_PID" ] && kill -0 "$SITE_PID" 2>/dev/null; then
    kill -TERM "$SITE_PID"
    wait "$SITE_PID" 2>/dev/null || true
  fi
  # Every key under the run's own prefix: the job's state and the spider's counters.
  redis-cli -u "$REDIS_URL" --scan --pattern "$RUN:*" |
    xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null || say "warning: deleting redis keys failed"
  if [ -n "${KAFKA_LIB:-}" ] && [ -d "$KAFKA_LIB" ]; then
    java -cp "$KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
      --delete --if-exists --topic "$TOPIC" >/dev/null 2>&1 || say "warning: deleting topic $TOPIC failed"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# The Kafka tools that `make env-up` installed, for deleting the bench's topic.
KAFKA_LIB=$(. tests/env/lib.sh && echo "$KC_CACHE/kafka-$KAFKA_VERSION/lib")

# CPU seconds (user + system) a running process has used so far.
cpu_of() {
  local ticks
  ticks=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

say "starting testsite --pages $PAGES"
start_site "$BIN" "$WORK" "$PAGES" "$PADDING" "$LINKS"
PAGE_BYTES=$(curl -s --resolve "site.test:$PORT:$IP" "${ROOT}p/1" | wc -c)
say "site $ROOT: $REACHABLE reachable pages of about $PAGE_BYTES bytes, up to $LINKS links each"

CRAWL=(crawl "$ROOT" --maxdepth 1000 --allowed-domain site.test "${RESOLVE[@]}"
  --allow-private-networks --delay 0s --no-progress --log warn)
if [ -n "${BENCH_CONCURRENCY:-}" ]; then
  CRAWL+=(--concurrency "$BENCH_CONCURRENCY" --per-host-concurrency "$BENCH_CONCURRENCY")
fi
WARC=${BENCH_WARC:-0}
WARC_LEVEL=${BENCH_WARC_GZIP_LEVEL:-6}
# warc_args NAME: the WARC flags of crawl NAME, when BENCH_WARC=1.
warc_args() {
  if [ "$WARC" = 1 ]; then
    echo "--warc-dir $WORK/warc-$1 --warc-gzip-level $WARC_LEVEL"
  fi
}

# run NAME ARGS...: runs the crawler under /usr/bin/time; leaves "wall user sys maxrss_kb" in
# $WORK/NAME.time and its summary in $WORK/NAME.log.
run() {
  local name=$1; shift
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/$name.time" "$BIN/kubecrawl-worker" "$@" \
    2>"$WORK/$name.log" || die "$name crawl failed: $(cat "$WORK/$name.log")"
  cat "$WORK/$name.log" >&2
}
# pages_of NAME: the pages a crawl's summary reports.
pages_of() { sed -nE 's/^finished [^:]+: ([0-9]+) pages.*/\1/p' "$WORK/$1.log" | tail -1; }

say "standalone: in-memory frontier, JSON lines"
site_cpu_before=$(cpu_of "$SITE_PID")
# shellcheck disable=SC2046 # the WARC flags are words without spaces
run standalone "${CRAWL[@]}" -o "$WORK/pages.jsonl" $(warc_args standalone)
site_cpu_after=$(cpu_of "$SITE_PID")
warc_bytes=null
if [ "$WARC" = 1 ]; then
  warc_bytes=$(cat "$WORK"/warc-standalone/*.warc.gz | wc -c)
  responses=$(zcat "$WORK"/warc-standalone/*.warc.gz | grep -ac '^WARC-Type: response')
  [ "$responses" -eq "$REACHABLE" ] || die "the WARC files hold $responses responses of $REACHABLE pages"
  say "WARC: $warc_bytes bytes, $responses responses"
  rm -rf "$WORK/warc-standalone"
fi
read -r s_wall s_user s_sys s_rss <"$WORK/standalone.time"
s_pages=$(wc -l <"$WORK/pages.jsonl")
s_distinct=$(jq -r .url "$WORK/pages.jsonl" | sort -u | wc -l)
[ "$s_distinct" -eq "$REACHABLE" ] || die "standalone crawl found $s_distinct of $REACHABLE pages"
rm -f "$WORK/pages.jsonl"

# redis_cpu: the Redis server's CPU seconds so far (its INFO, children included).
redis_cpu() {
  redis-cli -u "$REDIS_URL" INFO cpu | tr -d '\r' |
    awk -F: '/^used_cpu_(sys|user)(_children)?:/ { t += $2 } END { printf "%.2f", t }'
}
# The test environment's Kafka broker, when it runs here (its pid file); its CPU is reported.
KAFKA_PID=$(cat "${KUBECRAWL_STATE:-.testenv}/pids/kafka.pid" 2>/dev/null || true)
kafka_cpu() { if [ -n "$KAFKA_PID" ] && [ -r "/proc/$KAFKA_PID/stat" ]; then cpu_of "$KAFKA_PID"; else echo null; fi; }

say "distributed: one worker, Redis frontier $REDIS_URL, Kafka $KAFKA_BROKERS, prefix $RUN"
redis_before=$(redis_cpu)
kafka_before=$(kafka_cpu)
# shellcheck disable=SC2046 # the WARC flags are words without spaces
run distributed "${CRAWL[@]}" --crawlid bench --redis "$REDIS_URL" --redis-prefix "$RUN" \
  --kafka "$KAFKA_BROKERS" --topic-prefix "$RUN" $(warc_args distributed)
redis_after=$(redis_cpu)
kafka_after=$(kafka_cpu)
read -r d_wall d_user d_sys _ <"$WORK/distributed.time"
d_pages=$(pages_of distributed)
d_distinct=$(timeout 120 kcat -b "$KAFKA_BROKERS" -C -t "$TOPIC" -o beginning -e -q -f '%k\n' | sort -u | wc -l) ||
  die "reading topic $TOPIC back failed"
[ "$d_distinct" -eq "$REACHABLE" ] || die "the topic holds $d_distinct of $REACHABLE pages"

result=$(jq -cn \
  --argjson pages "$s_pages" --argjson s_wall "$s_wall" --argjson s_user "$s_user" \
  --argjson s_sys "$s_sys" --argjson s_rss "$s_rss" \
  --argjson site_before "$site_cpu_before" --argjson site_after "$site_cpu_after" \
  --argjson d_pages "$d_pages" --argjson d_wall "$d_wall" --argjson d_user "$d_user" \
  --argjson d_sys "$d_sys" --argjson page_bytes "$PAGE_BYTES" --argjson links "$LINKS" \
  --argjson redis_before "$redis_before" --argjson redis_after "$redis_after" \
  --argjson kafka_before "$kafka_before" --argjson kafka_after "$kafka_after" \
  --argjson warc_bytes "$warc_bytes" --argjson warc "$WARC" --argjson warc_level "$WARC_LEVEL" '
  def r(n): (. * n | round) / n;
  {
    standalone_pages_per_s: ($pages / $s_wall | r(1)),
    standalone_cpu_s_per_1000_pages: (($s_user + $s_sys) / $pages * 1000 | r(1000)),
    standalone_peak_rss_mb: ($s_rss / 1024 | r(10)),
    distributed_pages_per_s: ($d_pages / $d_wall | r(1)),
    pages: $pages,
    page_bytes: $page_bytes,
    links: $links,
    site_cpu_s: ($site_after - $site_before | r(100)),
    distributed_cpu_s_per_1000_pages: (($d_user + $d_sys) / $d_pages * 1000 | r(1000)),
    redis_cpu_s_per_1000_pages: (($redis_after - $redis_before) / $d_pages * 1000 | r(1000)),
    kafka_cpu_s_per_1000_pages: (if $kafka_after == null then null
      else ($kafka_after - $kafka_before) / $d_pages * 1000 | r(1000) end),
    warc_bytes: $warc_bytes,
    warc_gzip_level: (if $warc == 1 then $warc_level else null end)
  }')
# Clean up first, so that nothing it says comes after the result line.
cleanup
trap - EXIT
echo "$result"

#!/usr/bin/env bash
# `make bench-recrawl`: what a recrawl round costs next to the first crawl. Crawls the synthetic
# site on 127.0.0.1 (main pages with an ETag and a Last-Modified) standalone on the real Redis
# (REDIS_URL) with release binaries: round 1 (`crawl --recrawl`, everything fetched and
# written), then round 2 (the same command: every page asked for again with its validators,
# nothing changed, nothing written), BENCH_RUNS times (default 3), each under a crawlid and key
# prefix of its own. Prints one line per round, then, as its last line, one JSON object with
# the range (min, max) of each figure per round:
#
# - pages_per_s: pages over the crawler process's wall time, start-up and flush included;
# - cpu_s_per_1000_pages: user + system CPU of the crawler per 1000 pages;
# - peak_rss_mb: its peak resident memory;
# - known_bytes_per_page (round 1): Redis's MEMORY USAGE of the job's known pages (what the next
#   round is seeded from), per page.
#
# Round 2 must fetch every page of round 1, answer the main pages' conditional requests with
# 304, count every page unchanged and write nothing, or the bench fails.
#
# Settings: BENCH_PAGES (default 20000), BENCH_PADDING (default 12000: pages of about 15 KB),
# BENCH_LINKS (default 48), BENCH_RUNS (default 3). Cleans up after itself.
set -euo pipefail

cd "$(dirname "$0")/../.."
. tests/bench/site.sh
: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run make bench-recrawl}"
: "${REDIS_URL:?REDIS_URL is not set: run make bench-recrawl}"
PAGES=${BENCH_PAGES:-20000}
PADDING=${BENCH_PADDING:-12000}
LINKS=${BENCH_LINKS:-48}
RUNS=${BENCH_RUNS:-3}

say() { printf '[bench-recrawl] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

say "building release binaries"
cargo build --release --locked -q -p kubecrawl-worker -p kubecrawl-e2e \
  --bin kubecrawl-worker --bin testsite
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kubecrawl-bench-recrawl.XXXXXX")
# Copies: the target dir may be shared with other checkouts building the same names.
BIN=$WORK/bin
mkdir -p "$BIN"
cp "$CARGO_TARGET_DIR/release/kubecrawl-worker" "$CARGO_TARGET_DIR/release/testsite" "$BIN/"
"$BIN/kubecrawl-worker" crawl --help | grep -q -- '--recrawl' || die "the worker binary has no --recrawl"

REDIS_HOST=$(echo "$REDIS_URL" | sed -E 's#^redis://([^:/]+):([0-9]+).*#\1#')
REDIS_PORT=$(echo "$REDIS_URL" | sed -E 's#^redis://([^:/]+):([0-9]+).*#\2#')
rcli() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }
PREFIX_BASE=kcbench-recrawl-$$

SITE_PID=
cleanup() {
  if [ -n "$SITE_PID" ] && kill -0 "$SITE_PID" 2>/dev/null; then
    kill -TERM "$SITE_PID"
    wait "$SITE_PID" 2>/dev/null || true
  fi
  rcli --scan --pattern "$PREFIX_BASE-*" | xargs -r -d '\n' -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" unlink >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say "starting testsite --pages $PAGES --padding $PADDING --max-links $LINKS --validators"
start_site "$BIN" "$WORK" "$PAGES" "$PADDING" "$LINKS" --validators
PAGE_BYTES=$(curl -s --resolve "site.test:$PORT:$IP" "${ROOT}p/1" | wc -c)
say "site $ROOT: $REACHABLE reachable pages of about $PAGE_BYTES bytes, with validators"

: >"$WORK/runs.jsonl"
for run in $(seq "$RUNS"); do
  prefix=$PREFIX_BASE-$run
  CRAWL=(crawl "$ROOT" --maxdepth 1000 --allowed-domain site.test "${RESOLVE[@]}"
    --allow-private-networks --delay 0s --no-progress --log warn
    --redis "$REDIS_URL" --redis-prefix "$prefix" --crawlid "bench-$run" --recrawl)
  for round in 1 2; do
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$BIN/kubecrawl-worker" "${CRAWL[@]}" \
      -o "$WORK/pages.jsonl" 2>"$WORK/summary" \
      || die "round $round failed: $(cat "$WORK/summary")"
    read -r wall user sys rss <"$WORK/time"
    pages=$(sed -nE 's/^finished [^:]*: ([0-9]+) pages.*/\1/p' "$WORK/summary")
    written=$(wc -l <"$WORK/pages.jsonl")
    known=0
    if [ "$round" = 1 ]; then
      [ "$written" -eq "$pages" ] || die "round 1 wrote $written of $pages pages"
      bytes=0
      for key in $(rcli --scan --pattern "$prefix:*:kn:*"); do
        bytes=$((bytes + $(rcli memory usage "$key" samples 0)))
      done
      known=$(jq -n --argjson b "$bytes" --argjson p "$pages" '$b / $p | round')
      ROUND1_PAGES=$pages
    else
      [ "$pages" -eq "$ROUND1_PAGES" ] || die "round 2 fetched $pages of $ROUND1_PAGES pages"
      [ "$written" -eq 0 ] || die "round 2 wrote $written pages, nothing changed"
      grep -q "recrawl: 0 changed, $pages unchanged" "$WORK/summary" \
        || die "round 2 did not count every page unchanged: $(cat "$WORK/summary")"
      grep -qE "304: [0-9]+" "$WORK/summary" || die "no 304 in round 2: $(cat "$WORK/summary")"
    fi
    rm -f "$WORK/pages.jsonl"
    line=$(jq -cn --argjson round "$round" --argjson run "$run" --argjson pages "$pages" \
      --argjson wall "$wall" --argjson user "$user" --argjson sys "$sys" --argjson rss "$rss" \
      --argjson known "$known" '
      def r(n): (. * n | round) / n;
      {round: $round, run: $run, pages: $pages, pages_per_s: ($pages / $wall | r(1)),
       cpu_s_per_1000_pages: (($user + $sys) / $pages * 1000 | r(1000)),
       peak_rss_mb: ($rss / 1024 | r(10))}
      | if $round == 1 then . + {known_bytes_per_page: $known} else . end')
    say "$line"
    echo "$line" >>"$WORK/runs.jsonl"
  done
done

result=$(jq -cs --argjson page_bytes "$PAGE_BYTES" --argjson links "$LINKS" '
  def range(f): [map(f) | min, max];
  group_by(.round) | map({key: "round\(.[0].round)", value: {
    pages_per_s: range(.pages_per_s),
    cpu_s_per_1000_pages: range(.cpu_s_per_1000_pages),
    peak_rss_mb: range(.peak_rss_mb),
    known_bytes_per_page: range(.known_bytes_per_page),
    runs: length} | with_entries(select(.value != [null, null]))}) | from_entries
  | . + {pages: ('"$REACHABLE"'), page_bytes: $page_bytes, links: $links}' "$WORK/runs.jsonl")
cleanup
trap - EXIT
echo "$result"

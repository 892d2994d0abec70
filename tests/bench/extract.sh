#!/usr/bin/env bash
# `make bench-extract`: what a declarative spider (`extract` rules) costs a standalone crawl.
# Crawls the synthetic site on 127.0.0.1 with release binaries, BENCH_RUNS times (default 3)
# without rules and with them, alternating, and prints one line per run, then, as its last
# line, one JSON object with the range (min, max) of each figure per variant:
#
# - pages_per_s: pages over the crawler process's wall time, start-up and flush included;
# - cpu_s_per_1000_pages: user + system CPU of the crawler per 1000 pages;
# - peak_rss_mb: its peak resident memory.
#
# The rules take five fields from every page (the title, the heading, two attributes, and
# every link's text as a list) and follow the links of `ul, map` (every link of the site's pages,
# so both variants fetch the same pages): the DOM parse, the selectors and the link rules
# are the difference. Every run must find the site's whole ground truth, and every record of
# a run with rules must carry every field (every main page its title), or the bench fails.
#
# Settings: BENCH_PAGES (default 20000), BENCH_PADDING (default 12000: pages of about 15 KB),
# BENCH_LINKS (default 48), BENCH_RUNS (default 3). Cleans up after itself.
set -euo pipefail

cd "$(dirname "$0")/../.."
. tests/bench/site.sh
: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run make bench-extract}"
PAGES=${BENCH_PAGES:-20000}
PADDING=${BENCH_PADDING:-12000}
LINKS=${BENCH_LINKS:-48}
RUNS=${BENCH_RUNS:-3}

say() { printf '[bench-extract] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

say "building release binaries"
cargo build --release --locked -q -p kubecrawl-worker -p kubecrawl-e2e \
  --bin kubecrawl-worker --bin testsite
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kubecrawl-bench-extract.XXXXXX")
# Copies: the target dir may be shared with other checkouts building the same names.
BIN=$WORK/bin
mkdir -p "$BIN"
cp "$CARGO_TARGET_DIR/release/kubecrawl-worker" "$CARGO_TARGET_DIR/release/testsite" "$BIN/"
"$BIN/kubecrawl-worker" crawl --help | grep -q -- '--extract' || die "the worker binary has no --extract"

SITE_PID=
cleanup() {
  if [ -n "$SITE_PID" ] && kill -0 "$SITE_PID" 2>/dev/null; then
    kill -TERM "$SITE_PID"
    wait "$SITE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/rules.yaml" <<'RULES'
fields:
  - {name: title, selector: title}
  - {name: heading, selector: "h1#top"}
  - {name: anchor, selector: h1, attribute: id}
  - {name: stylesheet, selector: "link[rel=stylesheet]", attribute: href}
  - {name: links, selector: "ul a", all: true}
follow:
  - selector: "ul, map"
RULES

say "starting testsite --pages $PAGES --padding $PADDING --max-links $LINKS"
start_site "$BIN" "$WORK" "$PAGES" "$PADDING" "$LINKS"
PAGE_BYTES=$(curl -s --resolve "site.test:$PORT:$IP" "${ROOT}p/1" | wc -c)
say "site $ROOT: $REACHABLE reachable pages of about $PAGE_BYTES bytes"

CRAWL=(crawl "$ROOT" --maxdepth 1000 --allowed-domain site.test "${RESOLVE[@]}"
  --allow-private-networks --delay 0s --no-progress --log warn)

: >"$WORK/runs.jsonl"
for run in $(seq "$RUNS"); do
  for variant in plain extract; do
    args=("${CRAWL[@]}" -o "$WORK/pages.jsonl")
    [ "$variant" = extract ] && args+=(--extract "$WORK/rules.yaml")
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$BIN/kubecrawl-worker" "${args[@]}" \
      2>"$WORK/log" || die "$variant crawl failed: $(cat "$WORK/log")"
    read -r wall user sys rss <"$WORK/time"
    pages=$(wc -l <"$WORK/pages.jsonl")
    distinct=$(jq -r .url "$WORK/pages.jsonl" | sort -u | wc -l)
    [ "$distinct" -eq "$REACHABLE" ] || die "$variant crawl found $distinct of $REACHABLE pages"
    if [ "$variant" = extract ]; then
      # Every record has every field; every main page has its title.
      without=$(jq -c 'select((.fields | keys) != ["anchor", "heading", "links", "stylesheet", "title"]
        or ((.url | test("/p/[0-9]+$")) and (.fields.title | type) != "string")) | .url' \
        "$WORK/pages.jsonl" | wc -l)
      [ "$without" -eq 0 ] || die "$without records lack their fields"
    fi
    rm -f "$WORK/pages.jsonl"
    line=$(jq -cn --arg variant "$variant" --argjson run "$run" --argjson pages "$pages" \
      --argjson wall "$wall" --argjson user "$user" --argjson sys "$sys" --argjson rss "$rss" '
      def r(n): (. * n | round) / n;
      {variant: $variant, run: $run, pages: $pages, pages_per_s: ($pages / $wall | r(1)),
       cpu_s_per_1000_pages: (($user + $sys) / $pages * 1000 | r(1000)),
       peak_rss_mb: ($rss / 1024 | r(10))}')
    say "$line"
    echo "$line" >>"$WORK/runs.jsonl"
  done
done

result=$(jq -cs --argjson page_bytes "$PAGE_BYTES" --argjson links "$LINKS" '
  def range(f): [map(f) | min, max];
  group_by(.variant) | map({key: .[0].variant, value: {
    pages_per_s: range(.pages_per_s),
    cpu_s_per_1000_pages: range(.cpu_s_per_1000_pages),
    peak_rss_mb: range(.peak_rss_mb),
    runs: length}}) | from_entries
  | . + {pages: ('"$REACHABLE"'), page_bytes: $page_bytes, links: $links}' "$WORK/runs.jsonl")
cleanup
trap - EXIT
echo "$result"

#!/usr/bin/env bash
# `make bench-render`: what rendering in headless Chromium costs, with release binaries on the
# synthetic site on 127.0.0.1 (standalone crawls, in-memory frontier, JSON lines out).
#
# 1. Rendering: `crawl --render always` of BENCH_RENDER_PAGES (default 400) application shells
#    (`/js/spa/{k}`: a script builds each page's content and links) with 1, 2 and 4 browser
#    contexts (`--render-contexts`). Per run: pages/s over the crawler's wall time (browser
#    start included), and the peak memory (PSS, shared pages split between the processes that
#    share them) of the crawler and its browser processes together, sampled every 100 ms.
#    The memory of one more context is the rise from 1 to 4 contexts over 3. BENCH_CONTEXTS
#    (default "1 2 4") picks the numbers of contexts; empty skips these runs.
# 2. `auto` on a site that needs no rendering: the main pages (BENCH_PAGES, default 20000, no
#    scripts) crawled with `--render never` and with `--render auto` (the browser would start
#    at the first page to render; none is), BENCH_RUNS times each (default 3), alternating.
#    Per run: pages/s and CPU seconds (user + system, the crawler's and any browser's) per
#    1000 pages.
#
# Every render run must render every page and find the whole tree; the auto runs must render
# nothing. Prints one line per run, then, as its last line, one JSON object with the figures
# (ranges are min, max). Cleans up after itself.
set -euo pipefail

cd "$(dirname "$0")/../.."
. tests/bench/site.sh
: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run make bench-render}"
RENDER_PAGES=${BENCH_RENDER_PAGES:-400}
PAGES=${BENCH_PAGES:-20000}
RUNS=${BENCH_RUNS:-3}
# The numbers of contexts the render runs use; empty: only the auto runs.
CONTEXTS=${BENCH_CONTEXTS-1 2 4}
BROWSER=${KUBECRAWL_BROWSER:-/usr/lib/chromium/chromium-headless-shell}

say() { printf '[bench-render] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
[ -x "$BROWSER" ] || die "$BROWSER is missing: apt-get install chromium-headless-shell"

say "building release binaries"
cargo build --release --locked -q -p kubecrawl-worker -p kubecrawl-e2e \
  --bin kubecrawl-worker --bin testsite
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kubecrawl-bench-render.XXXXXX")
# Copies: the target dir may be shared with other checkouts building the same names.
BIN=$WORK/bin
mkdir -p "$BIN"
cp "$CARGO_TARGET_DIR/release/kubecrawl-worker" "$CARGO_TARGET_DIR/release/testsite" "$BIN/"
"$BIN/kubecrawl-worker" crawl --help | grep -q -- '--render-contexts' || die "the worker binary has no --render-contexts"

SITE_PID=
cleanup() {
  if [ -n "$SITE_PID" ] && kill -0 "$SITE_PID" 2>/dev/null; then
    kill -TERM "$SITE_PID"
    wait "$SITE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# peak_pss PID OUT: until PID ends, samples the PSS (kB) of PID and every process below it;
# writes the largest sum to OUT.
peak_pss() {
  python3 - "$1" "$2" <<'PY'
import os, sys, time
root, out = int(sys.argv[1]), sys.argv[2]
def tree(pid):
    pids, at = [pid], 0
    while at < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[at]}/task"):
                with open(f"/proc/{pids[at]}/task/{task}/children") as f:
                    pids += [int(c) for c in f.read().split()]
        except OSError:
            pass
        at += 1
    return pids
def pss(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
peak = 0
while os.path.exists(f"/proc/{root}"):
    try:
        with open(f"/proc/{root}/stat") as f:
            if f.read().rsplit(") ", 1)[1].startswith("Z"):
                break
    except OSError:
        break
    peak = max(peak, sum(pss(p) for p in tree(root)))
    time.sleep(0.1)
with open(out, "w") as f:
    f.write(str(peak))
PY
}

say "starting testsite --pages $PAGES --script-pages $RENDER_PAGES"
start_site "$BIN" "$WORK" "$PAGES" 2000 8 --script-pages "$RENDER_PAGES"
SPA_ROOT="${ROOT}js/spa/0"
say "site $ROOT: $REACHABLE reachable main pages, $RENDER_PAGES application shells from $SPA_ROOT"

: >"$WORK/render.jsonl"
for contexts in $CONTEXTS; do
  /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$BIN/kubecrawl-worker" crawl "$SPA_ROOT" \
    --maxdepth 1000 "${RESOLVE[@]}" --allow-private-networks --delay 0s --no-progress --log warn \
    --render always --render-contexts "$contexts" --browser "$BROWSER" \
    -o "$WORK/pages.jsonl" 2>"$WORK/summary" &
  CRAWLER=$!
  # /usr/bin/time's child is the crawler.
  sleep 0.2
  child=$(cat "/proc/$CRAWLER/task/$CRAWLER/children" 2>/dev/null | awk '{print $1}')
  peak_pss "${child:-$CRAWLER}" "$WORK/pss"
  wait "$CRAWLER" || die "the render crawl failed: $(cat "$WORK/summary")"
  read -r wall user sys <"$WORK/time"
  pages=$(sed -nE 's/^finished [^:]*: ([0-9]+) pages.*/\1/p' "$WORK/summary")
  rendered=$(jq -c 'select(.rendered == true)' "$WORK/pages.jsonl" | wc -l)
  [ "$pages" = "$RENDER_PAGES" ] && [ "$rendered" = "$RENDER_PAGES" ] \
    || die "$contexts contexts: $pages pages, $rendered rendered, expected $RENDER_PAGES of each: $(cat "$WORK/summary")"
  pss_mb=$(awk -v k="$(cat "$WORK/pss")" 'BEGIN { printf "%.1f", k / 1024 }')
  rate=$(awk -v p="$pages" -v w="$wall" 'BEGIN { printf "%.1f", p / w }')
  say "render, $contexts contexts: $pages pages in $wall s: $rate pages/s, peak PSS $pss_mb MB (crawler and browser)"
  printf '{"contexts":%s,"pages_per_s":%s,"peak_pss_mb":%s}\n' "$contexts" "$rate" "$pss_mb" >>"$WORK/render.jsonl"
done

: >"$WORK/auto.jsonl"
for run in $(seq "$RUNS"); do
  for mode in never auto; do
    /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$BIN/kubecrawl-worker" crawl "$ROOT" \
      --maxdepth 1000 --allowed-domain site.test "${RESOLVE[@]}" --allow-private-networks \
      --delay 0s --no-progress --log warn --render "$mode" --browser "$BROWSER" \
      -o "$WORK/pages.jsonl" 2>"$WORK/summary" || die "the $mode crawl failed: $(cat "$WORK/summary")"
    read -r wall user sys <"$WORK/time"
    pages=$(sed -nE 's/^finished [^:]*: ([0-9]+) pages.*/\1/p' "$WORK/summary")
    [ "$pages" = "$REACHABLE" ] || die "$mode: $pages pages, expected $REACHABLE"
    ! grep -q '"rendered":true' "$WORK/pages.jsonl" || die "$mode rendered a page of a site without scripts"
    rate=$(awk -v p="$pages" -v w="$wall" 'BEGIN { printf "%.0f", p / w }')
    cpu=$(awk -v p="$pages" -v u="$user" -v s="$sys" 'BEGIN { printf "%.3f", (u + s) * 1000 / p }')
    say "run $run, --render $mode: $pages pages in $wall s: $rate pages/s, $cpu CPU-s per 1000 pages"
    printf '{"mode":"%s","pages_per_s":%s,"cpu_s_per_1000_pages":%s}\n' "$mode" "$rate" "$cpu" >>"$WORK/auto.jsonl"
  done
done

jq -s -c --slurpfile auto "$WORK/auto.jsonl" '
  def range(f): [map(f) | min, max];
  (map(select(.contexts == 1))[0].peak_pss_mb) as $one
  | (map(select(.contexts == 4))[0].peak_pss_mb) as $four
  | {render: map({(.contexts | tostring): {pages_per_s, peak_pss_mb}}) | add,
     mb_per_extra_context: (if $one and $four then ((($four - $one) / 3) * 10 | round / 10) else null end),
     never: ($auto | map(select(.mode == "never")) | {pages_per_s: range(.pages_per_s), cpu_s_per_1000_pages: range(.cpu_s_per_1000_pages)}),
     auto: ($auto | map(select(.mode == "auto")) | {pages_per_s: range(.pages_per_s), cpu_s_per_1000_pages: range(.cpu_s_per_1000_pages)}),
     auto_cpu_overhead_percent: ((($auto | map(select(.mode == "auto")) | map(.cpu_s_per_1000_pages) | add)
        / ($auto | map(select(.mode == "never")) | map(.cpu_s_per_1000_pages) | add) - 1) * 1000 | round / 10)}
' "$WORK/render.jsonl"

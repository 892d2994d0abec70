#!/usr/bin/env bash
# `make profile-crawl`: where a standalone crawl spends its CPU. Crawls the synthetic site on
# 127.0.0.1 (20,000 pages of about 15 KB with 48 links by default) with the release
# kubecrawl-worker under `perf record`, then prints the crawler's CPU per 1000 pages and the
# top entries of the profile (self time by symbol).
#
# Settings: BENCH_PAGES (default 20000), BENCH_PADDING (default 12000), BENCH_LINKS (default
# 48), PROFILE_TOP (entries shown, default 25), WORKER_BIN (a kubecrawl-worker binary to
# profile instead of the release build, e.g. an older one to compare). Needs perf (Debian's
# linux-perf, installed when missing). Stops the site it started, removes its files.
set -euo pipefail

cd "$(dirname "$0")/../.."
. tests/bench/site.sh
: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run make profile-crawl}"
PAGES=${BENCH_PAGES:-20000}
PADDING=${BENCH_PADDING:-12000}
LINKS=${BENCH_LINKS:-48}
TOP=${PROFILE_TOP:-25}

say() { printf '[profile-crawl] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

if ! command -v perf >/dev/null; then
  say "installing linux-perf from Debian's packages"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null \
    || die "could not install linux-perf"
fi
say "building release binaries"
cargo build --release --locked -q -p kubecrawl-worker -p kubecrawl-e2e --bin kubecrawl-worker --bin testsite
BIN=$CARGO_TARGET_DIR/release
WORKER=${WORKER_BIN:-$BIN/kubecrawl-worker}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kubecrawl-profile.XXXXXX")
SITE_PID=
cleanup() {
  if [ -n "$SITE_PID" ] && kill -0 "$SITE_PID" 2>/dev/null; then
    kill -TERM "$SITE_PID"
    wait "$SITE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

start_site "$BIN" "$WORK" "$PAGES" "$PADDING" "$LINKS"

say "crawling $REACHABLE pages of $ROOT under perf record"
/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
  perf record -q -F 999 -o "$WORK/perf.data" -- "$WORKER" crawl "$ROOT" --maxdepth 1000 \
  --allowed-domain site.test "${RESOLVE[@]}" --allow-private-networks --delay 0s --no-progress \
  --log warn -o "$WORK/pages.jsonl" 2>"$WORK/crawl.log" || die "the crawl failed: $(cat "$WORK/crawl.log")"
pages=$(wc -l <"$WORK/pages.jsonl")
[ "$pages" -eq "$REACHABLE" ] || die "the crawl found $pages of $REACHABLE pages"
read -r wall user sys rss <"$WORK/time"
say "$pages pages in $wall s; crawler and perf: $(awk -v u="$user" -v s="$sys" -v p="$pages" 'BEGIN { printf "%.3f", (u + s) / p * 1000 }') CPU-s per 1000 pages, peak RSS $((rss / 1024)) MB"
echo "top $TOP entries, self time (the crawler's threads):"
# Into a file first: a pipe into `head` would end perf report with SIGPIPE, failing the script.
perf report -q -i "$WORK/perf.data" --no-children --sort dso,symbol --stdio >"$WORK/report.txt" 2>/dev/null \
  || die "perf report failed"
awk -v top="$TOP" 'NF && n++ < top { sub(/[ \t]+(-[ \t]+)*$/, ""); print }' "$WORK/report.txt"

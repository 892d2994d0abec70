# shellcheck shell=bash
# The synthetic site for the crawl benchmarks (crawl.sh, profile.sh). Sourced, never run.

# start_site BIN WORK PAGES PADDING LINKS [FLAG...]: starts BIN/testsite (with the extra FLAGs,
# e.g. --validators) in the background, waits until it
# serves, and sets SITE_PID, ROOT, REACHABLE (pages reachable from the root), IP, PORT and
# RESOLVE (the crawler's --resolve arguments for the site's hosts). Its description goes to
# WORK/site.json, its log to WORK/site.log. Needs the caller's `die`. With BENCH_GZIP=1 the
# site sends its main pages gzip-compressed, as most real servers send HTML.
start_site() {
  local bin=$1 work=$2 pages=$3 padding=$4 links=$5 host gzip=()
  [ "${BENCH_GZIP:-0}" = 1 ] && gzip=(--gzip)
  "$bin/testsite" --pages "$pages" --padding "$padding" --max-links "$links" "${gzip[@]}" "${@:6}" >"$work/site.json" 2>"$work/site.log" &
  SITE_PID=$!
  for _ in $(seq 600); do
    [ -s "$work/site.json" ] && break
    kill -0 "$SITE_PID" 2>/dev/null || die "testsite exited: $(cat "$work/site.log")"
    sleep 0.1
  done
  [ -s "$work/site.json" ] || die "testsite did not start within 60 s"
  ROOT=$(jq -r .root "$work/site.json")
  REACHABLE=$(jq -r .reachable "$work/site.json")
  IP=$(jq -r '.addr | split(":")[0]' "$work/site.json")
  PORT=$(jq -r '.addr | split(":")[1]' "$work/site.json")
  RESOLVE=()
  for host in $(jq -r '.hosts[]' "$work/site.json"); do RESOLVE+=(--resolve "$host=$IP"); done
}

#!/usr/bin/env bash
# What each Kafka compression codec costs on real HTML pages: builds page records (the
# firehose's JSON, each body a real HTML file) and publishes them with librdkafka (kcat)
# once per codec (and gzip at level 1, kubecrawl's default) into a fresh topic of the test Kafka, then reports for each codec the
# producer's CPU per 1,000 records, the bytes the broker stored per record, and the ratio
# to uncompressed. The last line is JSON.
#
#   tests/bench/compression.sh [HTML_DIR]
#
# HTML_DIR defaults to the Rust book that ships with the toolchain (462 pages, 26 KB on
# average): real pages, found offline on every machine that builds kubecrawl. Needs the
# environment of `make env-up` (KAFKA_BROKERS); deletes its topics and files at the end.
set -euo pipefail
say() { printf '[bench] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
[ -n "${KAFKA_BROKERS:-}" ] || die "KAFKA_BROKERS is not set: run it with make bench-compression"
DIR=${1:-$(rustc --print sysroot)/share/doc/rust/html/book}
[ -d "$DIR" ] || die "no such directory: $DIR"
WORK=$(mktemp -d)
RUN=bench-compression-$$
KAFKA_LIB=$(. tests/env/lib.sh && echo "$KC_CACHE/kafka-$KAFKA_VERSION/lib")
DATA=$(. tests/env/lib.sh && echo "$KC_STATE/kafka/data")
cleanup() {
  for topic in none gzip1 gzip snappy lz4 zstd; do
    java -cp "$KAFKA_LIB/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
      --delete --if-exists --topic "$RUN-$topic" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# One page record per HTML file under 512 KB (as a worker keeps at most 1 MiB of a body,
# and a record must fit the broker's default 1 MB), repeated to at least 2,000 records.
find "$DIR" -name '*.html' -size +1k -size -512k | sort > "$WORK/files"
[ -s "$WORK/files" ] || die "no HTML files in $DIR"
python3 - "$WORK/files" "$WORK/records.jsonl" <<'PY'
import json, sys
files = [l.strip() for l in open(sys.argv[1]) if l.strip()]
with open(sys.argv[2], "w") as out:
    n = 0
    while n < 2000:
        for path in files:
            body = open(path, encoding="utf-8", errors="replace").read()
            record = {
                "appid": "bench", "crawlid": "compression", "spiderid": "link",
                "url": f"http://site.test/{n}", "response_url": f"http://site.test/{n}",
                "status_code": 200, "status_msg": "OK",
                "response_headers": {"Content-Type": ["text/html; charset=utf-8"]},
                "request_headers": {"User-Agent": ["kubecrawl/0.1"]},
                "body": body, "body_encoding": "text", "body_truncated": False,
                "links": [], "attrs": None, "timestamp": "2026-12-05T10:00:00.000000",
                "encoding": "utf-8", "content_type": "text/html", "depth": 1,
                "fetch_time_ms": 12, "redirect_chain": [],
            }
            out.write(json.dumps(record) + "\n")
            n += 1
PY
RECORDS=$(wc -l < "$WORK/records.jsonl")
RAW=$(wc -c < "$WORK/records.jsonl")
say "$RECORDS records, $((RAW / RECORDS)) bytes each on average, from $DIR"

json="{\"records\": $RECORDS, \"record_bytes\": $((RAW / RECORDS))"
printf '%-8s %14s %16s %8s\n' codec "cpu_s/1000" "broker_B/record" ratio >&2
for variant in none gzip:1 gzip snappy lz4 zstd; do
  codec=${variant%%:*}
  level=-1
  [ "$variant" = "${variant#*:}" ] || level=${variant#*:}
  topic=$RUN-${variant/:/}
  /usr/bin/time -f '%U %S' -o "$WORK/$variant.time" \
    kcat -P -b "$KAFKA_BROKERS" -t "$topic" -z "$codec" -X linger.ms=100 \
    -X compression.level="$level" -l "$WORK/records.jsonl" \
    || die "kcat failed for $variant"
  read -r user sys < "$WORK/$variant.time"
  # The broker's log segments of the topic (one partition each is enough: all of them).
  sleep 1
  stored=$(du -cb "$DATA/$topic"-*/*.log 2>/dev/null | tail -1 | cut -f1)
  [ "${stored:-0}" -gt 0 ] || die "no log segments for $topic under $DATA"
  cpu=$(awk -v u="$user" -v s="$sys" -v n="$RECORDS" 'BEGIN { printf "%.3f", (u + s) * 1000 / n }')
  per=$((stored / RECORDS))
  [ "$codec" = none ] && none_per=$per
  ratio=$(awk -v a="$per" -v b="$none_per" 'BEGIN { printf "%.2f", a / b }')
  printf '%-8s %14s %16s %8s\n' "$variant" "$cpu" "$per" "$ratio" >&2
  json="$json, \"$variant\": {\"cpu_s_per_1000\": $cpu, \"broker_bytes_per_record\": $per, \"ratio\": $ratio}"
done
echo "$json}"

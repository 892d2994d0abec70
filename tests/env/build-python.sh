#!/usr/bin/env bash
# A Python virtual environment with kafka-python as Scrapy Cluster's consumers run it: the
# stock package only, none of the optional codec packages (lz4, python-snappy, zstandard),
# so a test that reads a topic through it sees only what a stock Scrapy Cluster client can
# decode (none and gzip). Built once into $KC_CACHE/python-$KAFKA_PYTHON_VERSION from PyPI.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

venv=$KC_CACHE/python-kafka-$KAFKA_PYTHON_VERSION
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import kafka' 2>/dev/null; then
  exit 0
fi
command -v python3 >/dev/null || die "python3 is needed for the Scrapy Cluster client tests"
log "installing kafka-python $KAFKA_PYTHON_VERSION from PyPI into $venv"
rm -rf "$venv"
python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
"$venv/bin/pip" install -q --disable-pip-version-check "kafka-python==$KAFKA_PYTHON_VERSION" \
  || die "could not install kafka-python $KAFKA_PYTHON_VERSION"

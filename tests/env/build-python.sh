#!/usr/bin/env bash
# Python virtual environments from PyPI, each built once into $KC_CACHE and reused:
# - python-kafka-$KAFKA_PYTHON_VERSION: kafka-python as Scrapy Cluster's consumers run it: the
#   stock package only, none of the optional codec packages (lz4, python-snappy, zstandard),
#   so a test that reads a topic through it sees only what a stock Scrapy Cluster client can
#   decode (none and gzip).
# - python-warcio-$WARCIO_VERSION: warcio, the independent reader that checks the worker's WARC
#   files (`warcio check`, `warcio index`).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || die "python3 is needed for the Python clients of the tests"

# venv DIR MODULE PACKAGE==VERSION: a virtual environment at DIR with PACKAGE installed, unless
# DIR already has one that imports MODULE.
venv() {
  local dir=$1 module=$2 package=$3
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import $module" 2>/dev/null; then
    return 0
  fi
  log "installing $package from PyPI into $dir"
  rm -rf "$dir"
  python3 -m venv "$dir" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$dir/bin/pip" install -q --disable-pip-version-check "$package" \
    || die "could not install $package"
}

venv "$KC_CACHE/python-kafka-$KAFKA_PYTHON_VERSION" kafka "kafka-python==$KAFKA_PYTHON_VERSION"
venv "$KC_CACHE/python-warcio-$WARCIO_VERSION" warcio "warcio==$WARCIO_VERSION"

#!/usr/bin/env bash
# `make prune-target`: keeps the shared Cargo target dir (CARGO_TARGET_DIR, outside the repo)
# from growing without bound. Every clone in a new directory builds its own copies of the
# workspace's crates and test binaries (their hashes include the path), so each CI run on a
# fresh clone left 10 GB or more behind; this machine's disk filled twice from it.
#
# Removes, in each profile's deps/ and incremental/, the builds of a name that are more than an
# hour older than its newest: of the test and binary executables, of the workspace's own
# libraries (kubecrawl*), and of the incremental caches. What the newest build made stays (two
# crates' test binaries may share a name, `startup`, and are built in the same run), so a warm
# build stays warm; third-party libraries are never touched. Never run it while a build uses
# the target dir.
set -euo pipefail

: "${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set: run make prune-target}"
say() { printf '[prune-target] %s\n' "$*" >&2; }
[ -d "$CARGO_TARGET_DIR" ] || { say "nothing to prune: $CARGO_TARGET_DIR does not exist"; exit 0; }

before=$(du -sm "$CARGO_TARGET_DIR" | cut -f1)
python3 - "$CARGO_TARGET_DIR" <<'EOF'
import collections
import os
import re
import shutil
import sys

target = sys.argv[1]
# Builds of one run are minutes apart; older runs are hours away.
SAME_RUN = 3600
artifact = re.compile(r'^(.*)-([0-9a-f]{16})(\..*)?$')
cache = re.compile(r'^(.*)-([0-9a-z]+)$')
for profile in ("debug", "release"):
    deps = os.path.join(target, profile, "deps")
    if os.path.isdir(deps):
        groups = collections.defaultdict(list)
        for name in os.listdir(deps):
            path = os.path.join(deps, name)
            m = artifact.match(name)
            if not m or not os.path.isfile(path):
                continue
            stem, ext = m.group(1), m.group(3) or ""
            executable = ext == "" and os.access(path, os.X_OK)
            ours = stem.startswith("libkubecrawl") or stem.startswith("kubecrawl")
            if executable or ours:
                groups[(stem, ext, executable)].append((os.path.getmtime(path), path))
        for versions in groups.values():
            newest = max(t for t, _ in versions)
            for t, path in versions:
                if t < newest - SAME_RUN:
                    os.remove(path)
    incremental = os.path.join(target, profile, "incremental")
    if os.path.isdir(incremental):
        groups = collections.defaultdict(list)
        for name in os.listdir(incremental):
            m = cache.match(name)
            if m:
                path = os.path.join(incremental, name)
                groups[m.group(1)].append((os.path.getmtime(path), path))
        for versions in groups.values():
            newest = max(t for t, _ in versions)
            for t, path in versions:
                if t < newest - SAME_RUN:
                    shutil.rmtree(path, ignore_errors=True)
EOF
after=$(du -sm "$CARGO_TARGET_DIR" | cut -f1)
say "$CARGO_TARGET_DIR: $before MB -> $after MB"

#!/usr/bin/env bash
# Assembles the whole root filesystem of a kubecrawl image into OUT: the binary in
# /usr/local/bin, exactly the shared libraries `ldd` lists for it (glibc, OpenSSL, zlib, …),
# the CA certificates, and passwd/group entries for the numeric user 65532. The image is then
# `FROM scratch` plus this tree: no shell, no package manager.
#
# Used by the Dockerfiles (in their build stage) and by `make images` (on a Debian bookworm
# host, the same distribution as the Dockerfiles' build image), so both build the same layout.
#
#   docker/rootfs.sh BINARY OUT [ALIAS...]
# An ALIAS is another name for the binary in /usr/local/bin (a custom spider's worker is
# also `kubecrawl-worker`, the command the operator starts).
#
# With ROOTFS_BROWSER=/usr/lib/chromium/chromium-headless-shell (Debian's package, installed
# on the building machine), the tree also holds that browser: its directory, the libraries
# `ldd` lists for it and for the libraries beside it, NSS's modules (loaded at run time), and
# fontconfig with the installed fonts (text in screenshots). That is the render worker's image.
set -euo pipefail

[ $# -ge 2 ] || { echo "usage: $0 BINARY OUT [ALIAS...]" >&2; exit 2; }
bin=$1 out=$2; shift 2
[ -x "$bin" ] || { echo "rootfs: $bin is not an executable" >&2; exit 1; }
certs=/etc/ssl/certs/ca-certificates.crt
[ -f "$certs" ] || { echo "rootfs: $certs is missing (install ca-certificates)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/usr/lib/ssl" "$out/tmp"
name=$(basename "$bin")
# The release profile keeps line tables for backtraces on the developer's machine; the image
# keeps the symbols (function names in a panic's backtrace) and drops the rest, about 80 %.
strip --strip-debug -o "$out/usr/local/bin/$name" "$bin"
for alias in "$@"; do ln -s "$name" "$out/usr/local/bin/$alias"; done

# Every library under the path the dynamic loader asks for, as a regular file: the image has
# no ld.so.cache, and the loader's built-in search path covers Debian's multiarch directories.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || { echo "rootfs: ldd lists no libraries for $bin" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done

cp -L "$certs" "$out$certs"
# OpenSSL (librdkafka's TLS) looks in its own directory by default; rustls and OpenSSL both
# honour SSL_CERT_FILE, which the image sets as well.
ln -s /etc/ssl/certs "$out/usr/lib/ssl/certs"
ln -s /etc/ssl/certs/ca-certificates.crt "$out/usr/lib/ssl/cert.pem"

printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$out/etc/group"
printf 'hosts: files dns\n' > "$out/etc/nsswitch.conf"
chmod 1777 "$out/tmp"

if [ -n "${ROOTFS_BROWSER:-}" ]; then
  [ -x "$ROOTFS_BROWSER" ] || { echo "rootfs: browser $ROOTFS_BROWSER is not an executable (install chromium-headless-shell)" >&2; exit 1; }
  dir=$(dirname "$ROOTFS_BROWSER")
  mkdir -p "$out$dir"
  cp -a "$dir/." "$out$dir/"
  # The libraries of the browser and of those shipped beside it, as regular files.
  # (Under pipefail, a loop whose last test is false would fail the whole pipeline: every
  # step here says what it does when there is nothing to do.)
  deps=$( {
      ldd "$ROOTFS_BROWSER"
      for so in "$dir"/*.so "$dir"/*.so.*; do
        if [ -f "$so" ]; then ldd "$so" 2>/dev/null || true; fi
      done
    } | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
  for lib in $deps; do
    if [ ! -e "$out$lib" ]; then
      mkdir -p "$out$(dirname "$lib")"
      cp -L "$lib" "$out$lib"
    fi
  done
  # NSS loads its modules by name at run time, so ldd does not list them.
  for nss in /usr/lib/*/nss /usr/lib/*/libsoftokn3.so /usr/lib/*/libfreebl3.so /usr/lib/*/libfreeblpriv3.so /usr/lib/*/libnssckbi.so; do
    if [ -e "$nss" ]; then
      mkdir -p "$out$(dirname "$nss")"
      cp -aL "$nss" "$out$nss"
    fi
  done
  for fonts in /etc/fonts /usr/share/fonts; do
    if [ -d "$fonts" ]; then
      mkdir -p "$out$(dirname "$fonts")"
      cp -aL "$fonts" "$out$fonts"
    fi
  done
  [ -x "$out$ROOTFS_BROWSER" ] || { echo "rootfs: the browser did not land in $out" >&2; exit 1; }
fi

#!/usr/bin/env bash
# Stand-ins for the two images the chart's dev mode (dev.enabled=true) runs, built here and
# imported into the real node's containerd under the chart's default names, since nothing can
# be pulled: docker.io/library/redis:7.4-alpine and docker.io/apache/kafka:4.2.0.
#
# - Redis: Debian's redis-server (7.0) and its libraries, run as redis-server with the chart's
#   arguments, in /data, like the official image.
# - Kafka: the Kafka $KAFKA_VERSION jars the environment built, Debian's Java 17, and an entry
#   point (busybox sh) that turns KAFKA_* variables into server.properties the way the
#   official image does (KAFKA_NODE_ID → node.id), formats the log directory once and starts
#   the broker: the chart's dev-mode settings are exactly those it gives the official image.
#
# Test fixtures only, labelled as such; rebuilt when this script changes. Run by node-up.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/node-lib.sh"

out=$KC_CACHE/images/dev
mkdir -p "$out" "$NODE_STATE/logs"
version=$(sha256sum "$0" | cut -c1-16)
if [ "$(cat "$out/.version" 2>/dev/null)" = "$version" ] && [ -f "$out/redis.tar" ] && [ -f "$out/kafka.tar" ]; then
  exit 0
fi
[ -x /bin/busybox ] || {
  log "installing busybox-static from Debian's packages (the Kafka stand-in's shell)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null \
    || die "could not install busybox-static"
}
[ -d "$KC_CACHE/kafka-$KAFKA_VERSION/lib" ] || die "no Kafka jars in $KC_CACHE/kafka-$KAFKA_VERSION: run make env-up first"
java_home=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# copy_libs ROOTFS FILE...: the shared libraries ldd lists for each FILE, as regular files.
copy_libs() {
  local root=$1 lib; shift
  for lib in $(ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
  done
}

# build NAME REF CONTAINERFILE: builds $work/NAME into REF and writes $out/NAME.tar.
build() {
  local name=$1 ref=$2
  printf '%s\n' "$3" > "$work/$name/Containerfile"
  buildah --storage-driver vfs bud --quiet --layers=false -f "$work/$name/Containerfile" -t "$ref" "$work/$name" >/dev/null \
    || die "could not build the $name stand-in"
  rm -f "$out/$name.tar"
  buildah --storage-driver vfs push --quiet "$ref" "oci-archive:$out/$name.tar:$ref" || die "could not save $ref"
  log "$ref (stand-in): $(du -h "$out/$name.tar" | cut -f1)"
}

# --- Redis ----------------------------------------------------------------------------------
r=$work/redis/rootfs
mkdir -p "$r/usr/local/bin" "$r/data" "$r/tmp"
cp -L "$(command -v redis-server)" "$r/usr/local/bin/redis-server"
copy_libs "$r" "$r/usr/local/bin/redis-server"
chmod 1777 "$r/tmp" "$r/data"
build redis docker.io/library/redis:7.4-alpine 'FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.description="kubecrawl test stand-in: Debian redis-server"
WORKDIR /data
USER 999:999
ENTRYPOINT ["/usr/local/bin/redis-server"]'

# --- Kafka ----------------------------------------------------------------------------------
k=$work/kafka/rootfs
mkdir -p "$k/opt/kafka/libs" "$k/opt/java" "$k/bin" "$k/tmp" "$k/etc"
cp "$KC_CACHE/kafka-$KAFKA_VERSION/lib/"*.jar "$k/opt/kafka/libs/"
# Links resolved (Debian points conf/ and the CA store into /etc); the sources are not needed.
tar -C "$java_home" -ch --exclude=lib/src.zip bin lib conf release | tar -C "$k/opt/java" -x
mapfile -t jvm_libs < <(find "$k/opt/java/lib" -name '*.so')
copy_libs "$k" "$k/opt/java/bin/java" "${jvm_libs[@]}"
cp /bin/busybox "$k/bin/busybox"
for tool in sh env grep sed tr cat mkdir; do ln -s busybox "$k/bin/$tool"; done
printf 'root:x:0:0:root:/root:/bin/sh\nappuser:x:1000:1000:appuser:/home/appuser:/bin/sh\n' > "$k/etc/passwd"
cat > "$k/opt/kafka/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = STDOUT
PROPS
cat > "$k/opt/kafka/run" <<'SH'
#!/bin/sh
# KAFKA_FOO_BAR=v becomes foo.bar=v ("__" is "_", "___" is "-"), as in the official image;
# the JVM's own variables stay variables.
set -ef
conf=/tmp/kafka/server.properties
mkdir -p /tmp/kafka
env | grep '^KAFKA_' | while IFS='=' read -r key value; do
  case $key in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_JMX_OPTS) continue ;;
  esac
  name=$(echo "${key#KAFKA_}" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' | tr 'A-Z' 'a-z')
  echo "$name=$value"
done > "$conf"
grep -q '^log.dirs=' "$conf" || echo 'log.dirs=/tmp/kraft-combined-logs' >> "$conf"
java="/opt/java/bin/java -XX:-UsePerfData -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties -cp /opt/kafka/libs/*"
logs=$(sed -n 's/^log.dirs=//p' "$conf")
[ -f "$logs/meta.properties" ] || $java kafka.tools.StorageTool format --ignore-formatted \
  -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$conf"
# shellcheck disable=SC2086 # the options are word lists
exec $java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} $KAFKA_OPTS kafka.Kafka "$conf"
SH
chmod 755 "$k/opt/kafka/run"
chmod 1777 "$k/tmp"
build kafka "docker.io/apache/kafka:$KAFKA_VERSION" "FROM scratch
COPY rootfs/ /
LABEL org.opencontainers.image.description=\"kubecrawl test stand-in: Kafka $KAFKA_VERSION on Debian's Java 17\"
ENV PATH=/bin:/opt/java/bin
USER 1000:1000
ENTRYPOINT [\"/opt/kafka/run\"]"

echo "$version" > "$out/.version"

#!/usr/bin/env bash
# Runs one single-node Kafka broker (KRaft, broker and controller) in the foreground, the way
# up.sh starts the shared one, for a test that must own its broker (the chaos suite kills it).
#
#   kafka-node.sh DIR PORT CONTROLLER_PORT [EXTRA_PORT EXTRA_ADVERTISED_PORT]
#
# Keeps its data in DIR/data (formatted only the first time, so a restart keeps every
# message) and logs to stderr. With EXTRA_PORT it also listens there as listener EXTRA,
# advertised at 127.0.0.1:EXTRA_ADVERTISED_PORT: clients that bootstrap through a proxy in
# front of EXTRA_PORT keep going through that proxy. The broker's process replaces this
# script's (exec), so the caller's pid is the broker's.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || [ $# -eq 5 ] || die "usage: kafka-node.sh DIR PORT CONTROLLER_PORT [EXTRA_PORT EXTRA_ADVERTISED_PORT]"
dir=$1 port=$2 cport=$3
KAFKA_LIB=$KC_CACHE/kafka-$KAFKA_VERSION/lib
[ -d "$KAFKA_LIB" ] || die "no Kafka jars in $KAFKA_LIB: run make env-up first"
mkdir -p "$dir/data"

listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
advertised="PLAINTEXT://127.0.0.1:$port"
protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
if [ $# -eq 5 ]; then
  listeners="$listeners,EXTRA://127.0.0.1:$4"
  advertised="$advertised,EXTRA://127.0.0.1:$5"
  protocols="$protocols,EXTRA:PLAINTEXT"
fi
cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data
num.partitions=3
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
cat > "$dir/log4j2.properties" <<'PROPS'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
logger.kafka.name = kafka
logger.kafka.level = warn
PROPS
jlog="-Dlog4j2.configurationFile=$dir/log4j2.properties"
if [ ! -f "$dir/data/meta.properties" ]; then
  uuid=$(java "$jlog" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  java "$jlog" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool format --standalone -t "$uuid" \
    -c "$dir/server.properties" >&2 || die "kafka storage format failed"
fi
exec java -Xms256m -Xmx512m "$jlog" -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties"

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
. "$(dirname "$0")/kafka-lib.sh"

[ $# -eq 3 ] || [ $# -eq 5 ] || die "usage: kafka-node.sh DIR PORT CONTROLLER_PORT [EXTRA_PORT EXTRA_ADVERTISED_PORT]"
dir=$1 port=$2 cport=$3
[ -d "$KAFKA_LIB" ] || die "no Kafka jars in $KAFKA_LIB: run make env-up first"

listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
advertised="PLAINTEXT://127.0.0.1:$port"
protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
if [ $# -eq 5 ]; then
  listeners="$listeners,EXTRA://127.0.0.1:$4"
  advertised="$advertised,EXTRA://127.0.0.1:$5"
  protocols="$protocols,EXTRA:PLAINTEXT"
fi
kafka_config "$dir" "$cport" 3 warn <<PROPS
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
PROPS
kafka_format "$dir" || die "kafka storage format failed"
kafka_command "$dir"
exec "${KAFKA_CMD[@]}"

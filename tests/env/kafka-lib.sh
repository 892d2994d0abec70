# A single-node Kafka broker (KRaft: broker and controller in one process), as the test
# environment runs three of them: the shared one (up.sh), the TLS/SASL one (tls.sh) and a
# test's own (kafka-node.sh). Sourced after lib.sh, never run.

KAFKA_LIB=$KC_CACHE/kafka-$KAFKA_VERSION/lib

# kafka_config DIR CONTROLLER_PORT PARTITIONS KAFKA_LOG_LEVEL: writes DIR/server.properties
# and DIR/log4j2.properties. Standard input adds the listener lines (listeners,
# advertised.listeners, inter.broker.listener.name, listener.security.protocol.map and any
# per-listener setting); the rest is the same for every broker here: one node, replication
# factor 1, data in DIR/data, topics created on first use. The file is written with umask
# 077, as listener lines may hold a password.
kafka_config() {
  local dir=$1 cport=$2 partitions=$3 level=$4
  mkdir -p "$dir/data"
  (
    umask 077
    {
      cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
controller.listener.names=CONTROLLER
PROPS
      cat
      cat <<PROPS
log.dirs=$dir/data
num.partitions=$partitions
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
    } > "$dir/server.properties"
  )
  cat > "$dir/log4j2.properties" <<PROPS
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
logger.kafka.name = kafka
logger.kafka.level = $level
PROPS
}

# kafka_format DIR [ARGS...]: formats DIR/data once (a restart keeps every message); ARGS go
# to the storage tool (e.g. --add-scram). Its output goes to standard error.
kafka_format() {
  local dir=$1; shift
  [ -f "$dir/data/meta.properties" ] && return 0
  local uuid
  uuid=$(kafka_java "$dir" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
  kafka_java "$dir" kafka.tools.StorageTool format --standalone -t "$uuid" \
    -c "$dir/server.properties" "$@" >&2
}

# kafka_command DIR: sets KAFKA_CMD to the broker's command line, for start (up.sh, tls.sh)
# or exec (kafka-node.sh).
kafka_command() {
  KAFKA_CMD=(java -Xms256m -Xmx512m "-Dlog4j2.configurationFile=$1/log4j2.properties"
    -cp "$KAFKA_LIB/*" kafka.Kafka "$1/server.properties")
}

kafka_java() {
  local dir=$1; shift
  java "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$KAFKA_LIB/*" "$@"
}

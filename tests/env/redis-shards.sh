# Sourced by up.sh: the Redis servers a sharded frontier runs on, all on 127.0.0.1.
#   redis-shard1..3    independent Redis servers on $REDIS_SHARD_PORTS (a list of shards)
#   redis-cluster1..3  a Redis Cluster of three primaries on $REDIS_CLUSTER_PORTS, slots split
#                      evenly (redis-cli --cluster create), no replicas
# Each is Debian's redis-server without persistence. Uses start, pid_alive, wait_for, $PIDS,
# $LOGS from up.sh.

start_redis_shards() {
  local i=0 port name dir
  for port in $REDIS_SHARD_PORTS; do
    i=$((i + 1)); name=redis-shard$i
    if pid_alive "$PIDS/$name.pid"; then log "$name already running"; continue; fi
    dir=$KC_STATE/$name; mkdir -p "$dir"
    start "$name" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --dir "$dir" --protected-mode yes
  done
  i=0
  for port in $REDIS_CLUSTER_PORTS; do
    i=$((i + 1)); name=redis-cluster$i
    if pid_alive "$PIDS/$name.pid"; then log "$name already running"; continue; fi
    dir=$KC_STATE/$name; mkdir -p "$dir"
    # A node's cluster config survives in $dir only while it runs: a restarted node forms a
    # new cluster with the others (its old nodes.conf is removed).
    rm -f "$dir/nodes.conf"
    start "$name" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --dir "$dir" --protected-mode yes --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout 5000
  done
  for port in $REDIS_SHARD_PORTS $REDIS_CLUSTER_PORTS; do
    wait_for 20 "redis on $port" redis-cli -p "$port" ping || die "redis on $port did not start (see $LOGS)"
  done
  local first
  first=$(echo "$REDIS_CLUSTER_PORTS" | awk '{print $1}')
  if ! redis-cli -p "$first" cluster info | grep -q '^cluster_state:ok'; then
    local nodes=()
    for port in $REDIS_CLUSTER_PORTS; do
      # Nodes left from an interrupted creation are emptied first.
      redis-cli -p "$port" cluster reset hard >/dev/null
      nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
      >"$LOGS/redis-cluster-create.log" 2>&1 || die "creating the redis cluster failed (see $LOGS/redis-cluster-create.log)"
    cluster_ok() { redis-cli -p "$first" cluster info | grep -q '^cluster_state:ok'; }
    wait_for 30 "redis cluster" cluster_ok || die "the redis cluster did not become ok"
  fi
}

# The export lines of the shard URLs: comma-separated, in shard order.
redis_shards_env() {
  local urls=() port
  for port in $REDIS_SHARD_PORTS; do urls+=("redis://127.0.0.1:$port"); done
  echo "export REDIS_SHARD_URLS=$(IFS=,; echo "${urls[*]}")"
  urls=()
  for port in $REDIS_CLUSTER_PORTS; do urls+=("redis://127.0.0.1:$port"); done
  echo "export REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")"
}

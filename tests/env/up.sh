#!/usr/bin/env bash
# Brings up the real services kubecrawl's tests use, all on 127.0.0.1:
#   Redis (Debian's redis-server; also three shards and a Redis Cluster of three primaries),
#   Apache Kafka (KRaft, one node, jars from Maven Central),
#   a TLS Redis and a SASL_SSL / mTLS Kafka node with a CA made at test time (tls.sh),
#   etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from the Go module proxy).
# Installs what is missing, reuses what is cached, records every pid it starts under
# $KC_STATE/pids, and is idempotent: services already running are left as they are.
# Writes $KC_STATE/env, a file of shell export lines for tests and people.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/kafka-lib.sh"

PIDS=$KC_STATE/pids
LOGS=$KC_STATE/logs
mkdir -p "$PIDS" "$LOGS"
total_start=$SECONDS

# --- what the machine needs -------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v kcat >/dev/null || missing+=(kcat)
command -v openssl >/dev/null || missing+=(openssl)
command -v java >/dev/null || missing+=(default-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
# The headless browser the render tests drive (Debian's; docs/crawljob.md, "Rendering").
[ -x /usr/lib/chromium/chromium-headless-shell ] || missing+=(chromium-headless-shell)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian's packages"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]}"
fi
command -v go >/dev/null || die "Go is needed to build the Kubernetes test binaries"

bash "$(dirname "$0")/build-kafka.sh"
bash "$(dirname "$0")/build-python.sh"
bash "$(dirname "$0")/build-k8s.sh"
BIN=$KC_CACHE/bin

# start NAME CMD...: runs CMD detached in its own session, logging to $LOGS/NAME.log.
start() {
  local name=$1; shift
  setsid nohup "$@" >"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

# --- Redis -----------------------------------------------------------------------------
if pid_alive "$PIDS/redis.pid"; then
  log "redis already running"
else
  mkdir -p "$KC_STATE/redis"
  start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$KC_STATE/redis" --protected-mode yes
  wait_for 20 redis redis-cli -p "$REDIS_PORT" ping || die "redis did not start (see $LOGS/redis.log)"
fi

# --- Redis shards and a Redis Cluster (redis-shards.sh) ------------------------------------
. "$(dirname "$0")/redis-shards.sh"
start_redis_shards

# --- Kafka -----------------------------------------------------------------------------
kafka_ready() { kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 -J | grep -q '"brokers":\[{'; }
if pid_alive "$PIDS/kafka.pid"; then
  log "kafka already running"
else
  kdir=$KC_STATE/kafka
  kafka_config "$kdir" "$KAFKA_CONTROLLER_PORT" 4 info <<PROPS
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
PROPS
  kafka_format "$kdir" 2>"$LOGS/kafka-format.log" || die "kafka storage format failed (see $LOGS/kafka-format.log)"
  kafka_command "$kdir"
  start kafka "${KAFKA_CMD[@]}"
fi

# --- TLS Redis and SASL_SSL Kafka (tls.sh) --------------------------------------------------
. "$(dirname "$0")/tls.sh"
tls_pki
start_redis_tls
start_kafka_tls

# --- PKI for the API server --------------------------------------------------------------
PKI=$KC_STATE/pki
if [ ! -f "$PKI/admin.ext" ]; then
  rm -rf "$PKI"; mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=kubecrawl-test-ca"
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin"
    # Extensions make this an X.509 v3 certificate; rustls refuses v1 client certificates.
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile admin.ext -out admin.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$LOGS/pki.log" 2>&1 || die "creating the test PKI failed (see $LOGS/pki.log)"
fi
KUBECONFIG_FILE=$KC_STATE/kubeconfig
cat > "$KUBECONFIG_FILE" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: kubecrawl-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: kubecrawl-test
  context: {cluster: kubecrawl-test, user: admin, namespace: default}
current-context: kubecrawl-test
KCFG

# --- etcd and the control plane ------------------------------------------------------------
if pid_alive "$PIDS/etcd.pid"; then
  log "etcd already running"
else
  start etcd "$BIN/etcd" --name default --data-dir "$KC_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --log-level warn
  wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health" || die "etcd did not start (see $LOGS/etcd.log)"
fi

apiserver_ready() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT/readyz"
}
if pid_alive "$PIDS/kube-apiserver.pid"; then
  log "kube-apiserver already running"
else
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
    --secure-port="$APISERVER_PORT" --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" --cert-dir="$KC_STATE/apiserver-certs" \
    --enable-admission-plugins=PodNodeSelector,PodTolerationRestriction
fi
wait_for 90 kube-apiserver apiserver_ready || die "kube-apiserver did not become ready (see $LOGS/kube-apiserver.log)"

if pid_alive "$PIDS/kube-controller-manager.pid"; then
  log "kube-controller-manager already running"
else
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false --secure-port=0 --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" --cluster-signing-cert-file="$PKI/ca.crt" \
    --cluster-signing-key-file="$PKI/ca.key" --controllers='*,-nodeipam,-nodelifecycle' \
    --use-service-account-credentials=false
fi
if pid_alive "$PIDS/kube-scheduler.pid"; then
  log "kube-scheduler already running"
else
  start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false --secure-port=0
fi

wait_for 90 kafka kafka_ready || die "kafka did not become ready (see $LOGS/kafka.log)"
wait_for 90 kafka-tls kafka_tls_ready || die "kafka-tls did not become ready (see $LOGS/kafka-tls.log)"

cat > "$KC_STATE/env" <<ENV
# Written by 'make env-up'. Source it: . .testenv/env
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export KUBECONFIG=$KUBECONFIG_FILE
export PATH=$BIN:\$PATH
export SCRAPY_CLUSTER_PYTHON=$KC_CACHE/python-kafka-$KAFKA_PYTHON_VERSION/bin/python
export WARCIO=$KC_CACHE/python-warcio-$WARCIO_VERSION/bin/warcio
$(tls_env)
$(redis_shards_env)
ENV
log "environment up in $((SECONDS - total_start)) s; source $KC_STATE/env"

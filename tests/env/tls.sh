# TLS and authenticated services for the tests, sourced by up.sh (after its start()):
#   redis-tls  Debian's redis-server on $REDIS_TLS_PORT, TLS only (--port 0), the default user
#              off and an ACL user `kubecrawl` with a password; client certificates optional
#              (verified when presented).
#   kafka-tls  a second one-node Kafka: SASL_SSL on $KAFKA_SASL_PORT (SCRAM-SHA-512,
#              SCRAM-SHA-256 and PLAIN, user `kubecrawl`, created by Kafka's own storage tool),
#              SSL with a required client certificate on $KAFKA_MTLS_PORT, and a plaintext
#              listener for the broker itself on $KAFKA_TLS_INTERNAL_PORT.
# Everything is signed by a CA made here with openssl; a second, unrelated CA is made for
# the tests that must fail. Passwords are random, kept in files under $TLS (mode 600).
# A separate node, not new listeners on the shared Kafka, so that adding it never needs the
# running Kafka restarted.

TLS=$KC_STATE/tls

tls_pki() {
  [ -f "$TLS/.complete" ] && return 0
  rm -rf "$TLS"; mkdir -p "$TLS"; chmod 700 "$TLS"
  (
    cd "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=kubecrawl-test-services-ca"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout wrong-ca.key -out wrong-ca.crt -subj "/CN=kubecrawl-unrelated-ca"
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext -out server.crt
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=kubecrawl"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > client.ext
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out client.crt
    # Kafka's PEM key store: the PKCS#8 key and its certificate in one file.
    cat server.key server.crt > kafka-keystore.pem
    openssl rand -hex 16 > redis-password
    openssl rand -hex 16 > kafka-password
    chmod 600 ./*.key redis-password kafka-password kafka-keystore.pem
  ) >"$LOGS/tls-pki.log" 2>&1 || die "creating the TLS test PKI failed (see $LOGS/tls-pki.log)"
  touch "$TLS/.complete"
}

redis_tls_cli() {
  redis-cli --tls --cacert "$TLS/ca.crt" -h 127.0.0.1 -p "$REDIS_TLS_PORT" \
    --user kubecrawl --pass "$(cat "$TLS/redis-password")" --no-auth-warning "$@"
}

start_redis_tls() {
  if pid_alive "$PIDS/redis-tls.pid"; then
    log "redis-tls already running"
    return 0
  fi
  local dir=$KC_STATE/redis-tls
  mkdir -p "$dir"
  (
    umask 077
    cat > "$dir/redis.conf" <<CONF
bind 127.0.0.1
port 0
tls-port $REDIS_TLS_PORT
tls-cert-file $TLS/server.crt
tls-key-file $TLS/server.key
tls-ca-cert-file $TLS/ca.crt
tls-auth-clients optional
save ""
appendonly no
dir $dir
user default off
user kubecrawl on >$(cat "$TLS/redis-password") ~* &* +@all
CONF
  )
  start redis-tls redis-server "$dir/redis.conf"
  wait_for 20 redis-tls redis_tls_cli ping || die "redis-tls did not start (see $LOGS/redis-tls.log)"
}

# Ready when a SASL_SSL client gets the metadata. PLAIN, because Debian's kcat (librdkafka
# 2.0.2) fails SCRAM against Kafka 4.x, where Kafka's Java client and kubecrawl's librdkafka
# 2.12 succeed.
kafka_tls_ready() {
  kcat -b "127.0.0.1:$KAFKA_SASL_PORT" -X security.protocol=SASL_SSL -X sasl.mechanisms=PLAIN \
    -X sasl.username=kubecrawl -X "sasl.password=$(cat "$TLS/kafka-password")" \
    -X "ssl.ca.location=$TLS/ca.crt" -L -m 2 -J | grep -q '"brokers":\[{'
}

start_kafka_tls() {
  if pid_alive "$PIDS/kafka-tls.pid"; then
    log "kafka-tls already running"
    return 0
  fi
  local kdir=$KC_STATE/kafka-tls pw
  pw=$(cat "$TLS/kafka-password")
  kafka_config "$kdir" "$KAFKA_TLS_CONTROLLER_PORT" 4 info <<PROPS
listeners=INTERNAL://127.0.0.1:$KAFKA_TLS_INTERNAL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT,CONTROLLER://127.0.0.1:$KAFKA_TLS_CONTROLLER_PORT
advertised.listeners=INTERNAL://127.0.0.1:$KAFKA_TLS_INTERNAL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_MTLS_PORT
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_kubecrawl="$pw";
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/kafka-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.crt
listener.name.ssl.ssl.client.auth=required
PROPS
  kafka_format "$kdir" \
    --add-scram "SCRAM-SHA-512=[name=kubecrawl,password=$pw]" \
    --add-scram "SCRAM-SHA-256=[name=kubecrawl,password=$pw]" \
    2>"$LOGS/kafka-tls-format.log" || die "kafka-tls storage format failed (see $LOGS/kafka-tls-format.log)"
  kafka_command "$kdir"
  start kafka-tls "${KAFKA_CMD[@]}"
}

# The lines up.sh adds to $KC_STATE/env. No KUBECRAWL_ names: the binaries would read them.
tls_env() {
  cat <<ENV
export TLS_CA_FILE=$TLS/ca.crt
export TLS_WRONG_CA_FILE=$TLS/wrong-ca.crt
export TLS_CLIENT_CERT_FILE=$TLS/client.crt
export TLS_CLIENT_KEY_FILE=$TLS/client.key
export REDIS_TLS_URL=rediss://127.0.0.1:$REDIS_TLS_PORT
export REDIS_TLS_USERNAME=kubecrawl
export REDIS_TLS_PASSWORD_FILE=$TLS/redis-password
export KAFKA_SASL_BROKERS=127.0.0.1:$KAFKA_SASL_PORT
export KAFKA_SASL_USERNAME=kubecrawl
export KAFKA_SASL_PASSWORD_FILE=$TLS/kafka-password
export KAFKA_MTLS_BROKERS=127.0.0.1:$KAFKA_MTLS_PORT
ENV
}

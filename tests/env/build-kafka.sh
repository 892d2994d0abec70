#!/usr/bin/env bash
# Copies Apache Kafka's broker and tool jars from Maven Central into $KC_CACHE/kafka-$KAFKA_VERSION/lib.
# Kafka Connect is left out: the broker and the topic tools do not need it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir=$KC_CACHE/kafka-$KAFKA_VERSION
if [ -f "$dir/.complete" ]; then
  exit 0
fi
command -v mvn >/dev/null || die "maven (mvn) is needed to fetch Kafka's jars"
rm -rf "$dir"; mkdir -p "$dir/lib"
cat > "$dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kubecrawl.test</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <properties>
    <kafka.version>$KAFKA_VERSION</kafka.version>
    <log4j.version>$LOG4J_VERSION</log4j.version>
  </properties>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>\${kafka.version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>\${kafka.version}</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-api</artifactId></exclusion>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-json</artifactId></exclusion>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-transforms</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>\${log4j.version}</version>
    </dependency>
  </dependencies>
</project>
POM
log "fetching Kafka $KAFKA_VERSION jars from Maven Central"
start=$SECONDS
(cd "$dir" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory="$dir/lib" -DincludeScope=runtime >"$dir/maven.log" 2>&1) \
  || { cat "$dir/maven.log" >&2; die "maven could not fetch the Kafka jars"; }
touch "$dir/.complete"
log "fetched $(ls "$dir/lib" | wc -l) jars in $((SECONDS - start)) s"

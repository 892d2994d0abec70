{{/* The release's base name. */}}
{{- define "kubecrawl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubecrawl.labels" -}}
app.kubernetes.io/name: kubecrawl
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubecrawl.operatorSelector" -}}
app.kubernetes.io/name: kubecrawl
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kubecrawl.workersNamespace" -}}
{{- default .Release.Namespace .Values.workers.namespace -}}
{{- end -}}

{{/* The Redis URL given as a value (empty when it comes from a Secret). */}}
{{- define "kubecrawl.redisUrl" -}}
{{- if .Values.redis.url -}}
{{- .Values.redis.url -}}
{{- else if .Values.dev.enabled -}}
{{- printf "redis://%s-redis.%s.svc:6379" (include "kubecrawl.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "kubecrawl.kafkaBrokers" -}}
{{- if .Values.kafka.brokers -}}
{{- .Values.kafka.brokers -}}
{{- else if .Values.dev.enabled -}}
{{- printf "%s-kafka.%s.svc:9092" (include "kubecrawl.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "kubecrawl.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubecrawl.restrictedPod" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* kafka.properties as key=value,key=value. */}}
{{- define "kubecrawl.kafkaProperties" -}}
{{- $pairs := list -}}
{{- range $k, $v := .Values.kafka.properties -}}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
TLS and authentication for Redis and Kafka. Every secret comes from an existing Secret and
reaches the pod as a file under /var/run/secrets/kubecrawl/<volume>/; the env only names the
files. Three parts per service, used together: *Env (container env items), *Volumes (pod
volumes), *Mounts (container volumeMounts). Each renders nothing when nothing is set.
*/}}
{{- define "kubecrawl.secretDir" -}}
/var/run/secrets/kubecrawl/{{ . }}
{{- end -}}

{{- define "kubecrawl.redisEnv" -}}
{{- if .Values.redis.cluster }}
- name: KUBECRAWL_REDIS_CLUSTER
  value: "true"
{{- if .Values.redis.shards }}
- name: KUBECRAWL_REDIS_SHARDS
  value: {{ .Values.redis.shards | quote }}
{{- end }}
{{- end }}
{{- with .Values.redis.username }}
- name: KUBECRAWL_REDIS_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if .Values.redis.passwordSecret.name }}
- name: KUBECRAWL_REDIS_PASSWORD_FILE
  value: {{ include "kubecrawl.secretDir" "redis-password" }}/password
{{- end }}
{{- if .Values.redis.tls.caSecret.name }}
- name: KUBECRAWL_REDIS_CA_FILE
  value: {{ include "kubecrawl.secretDir" "redis-ca" }}/ca.crt
{{- end }}
{{- if .Values.redis.tls.clientSecret }}
- name: KUBECRAWL_REDIS_CERT_FILE
  value: {{ include "kubecrawl.secretDir" "redis-client" }}/tls.crt
- name: KUBECRAWL_REDIS_KEY_FILE
  value: {{ include "kubecrawl.secretDir" "redis-client" }}/tls.key
{{- end }}
{{- end -}}

{{- define "kubecrawl.kafkaEnv" -}}
- name: KUBECRAWL_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "sasl" .Values.kafka.securityProtocol }}
- name: KUBECRAWL_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: KUBECRAWL_KAFKA_USERNAME
  value: {{ .Values.kafka.sasl.username | quote }}
{{- end }}
{{- if .Values.kafka.sasl.passwordSecret.name }}
- name: KUBECRAWL_KAFKA_PASSWORD_FILE
  value: {{ include "kubecrawl.secretDir" "kafka-password" }}/password
{{- end }}
{{- if .Values.kafka.tls.caSecret.name }}
- name: KUBECRAWL_KAFKA_CA_FILE
  value: {{ include "kubecrawl.secretDir" "kafka-ca" }}/ca.crt
{{- end }}
{{- if .Values.kafka.tls.clientSecret }}
- name: KUBECRAWL_KAFKA_CERT_FILE
  value: {{ include "kubecrawl.secretDir" "kafka-client" }}/tls.crt
- name: KUBECRAWL_KAFKA_KEY_FILE
  value: {{ include "kubecrawl.secretDir" "kafka-client" }}/tls.key
{{- end }}
{{- end -}}

{{/* The volumes of one service: "kubecrawl.secretVolumes" (dict "v" .Values.redis "svc" "redis" "password" .Values.redis.passwordSecret). */}}
{{- define "kubecrawl.secretVolumes" -}}
{{- $v := .v -}}
{{- $password := .password -}}
{{- if $password.name }}
- name: {{ .svc }}-password
  secret:
    secretName: {{ $password.name }}
    items: [{key: {{ $password.key | quote }}, path: password}]
{{- end }}
{{- if $v.tls.caSecret.name }}
- name: {{ .svc }}-ca
  secret:
    secretName: {{ $v.tls.caSecret.name }}
    items: [{key: {{ $v.tls.caSecret.key | quote }}, path: ca.crt}]
{{- end }}
{{- with $v.tls.clientSecret }}
- name: {{ $.svc }}-client
  secret:
    secretName: {{ . }}
    items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]
{{- end }}
{{- end -}}

{{- define "kubecrawl.secretMounts" -}}
{{- $v := .v -}}
{{- $password := .password -}}
{{- range $name, $on := dict "password" $password.name "ca" $v.tls.caSecret.name "client" $v.tls.clientSecret }}
{{- if $on }}
- name: {{ $.svc }}-{{ $name }}
  mountPath: {{ include "kubecrawl.secretDir" (printf "%s-%s" $.svc $name) }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "kubecrawl.redisVolumes" -}}
{{- include "kubecrawl.secretVolumes" (dict "v" .Values.redis "svc" "redis" "password" .Values.redis.passwordSecret) -}}
{{- end -}}
{{- define "kubecrawl.redisMounts" -}}
{{- include "kubecrawl.secretMounts" (dict "v" .Values.redis "svc" "redis" "password" .Values.redis.passwordSecret) -}}
{{- end -}}
{{/* WARC output (workers.warc): the volume the files go to, and its mount. */}}
{{- define "kubecrawl.warcVolumes" -}}
{{- with .Values.workers.warc }}
{{- if .enabled }}
- name: warc
{{- if .volume.claimName }}
  persistentVolumeClaim:
    claimName: {{ .volume.claimName }}
{{- else if .volume.sizeLimit }}
  emptyDir:
    sizeLimit: {{ .volume.sizeLimit }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
{{- define "kubecrawl.warcMounts" -}}
{{- with .Values.workers.warc }}
{{- if .enabled }}
- name: warc
  mountPath: {{ .dir }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "kubecrawl.kafkaVolumes" -}}
{{- include "kubecrawl.secretVolumes" (dict "v" .Values.kafka "svc" "kafka" "password" .Values.kafka.sasl.passwordSecret) -}}
{{- end -}}
{{- define "kubecrawl.kafkaMounts" -}}
{{- include "kubecrawl.secretMounts" (dict "v" .Values.kafka "svc" "kafka" "password" .Values.kafka.sasl.passwordSecret) -}}
{{- end -}}

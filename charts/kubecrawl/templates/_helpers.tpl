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

{{/* Names and labels. */}}
{{- define "ehac.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ehac.labels" -}}
app.kubernetes.io/name: ehac
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ehac.selector" -}}
app.kubernetes.io/name: ehac
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ehac.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Kafka and topics, the same for every service. */}}
{{- define "ehac.kafkaEnv" -}}
- name: EHAC_KAFKA_BROKERS
  value: {{ .Values.kafka.brokers | quote }}
- name: EHAC_TOPIC_RAW
  value: {{ .Values.kafka.topics.raw | quote }}
- name: EHAC_TOPIC_ENRICHED
  value: {{ .Values.kafka.topics.enriched | quote }}
- name: EHAC_TOPIC_REJECTED
  value: {{ .Values.kafka.topics.rejected | quote }}
{{- end -}}

{{/* The gateway and the enricher must judge by the same policy. */}}
{{- define "ehac.policyEnv" -}}
- name: EHAC_DEPARTURE_WINDOW_PAST_DAYS
  value: {{ .Values.policy.departureWindowPastDays | quote }}
- name: EHAC_DEPARTURE_WINDOW_FUTURE_DAYS
  value: {{ .Values.policy.departureWindowFutureDays | quote }}
{{- end -}}

{{- define "ehac.clickhouseEnv" -}}
- name: EHAC_CLICKHOUSE_URL
  value: {{ .root.Values.clickhouse.url | quote }}
- name: EHAC_CLICKHOUSE_USER
  value: {{ .user | quote }}
- name: EHAC_CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.clickhouse.passwordsSecret | quote }}
      key: {{ .user | quote }}
{{- with .root.Values.clickhouse.cluster }}
# A replicated ClickHouse: DDL ON CLUSTER, and writers insert into the <table>_local tables.
- name: EHAC_CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The pod's own name: the consumer's static group.instance.id (and the enricher's transactional id). */}}
{{- define "ehac.instanceIdEnv" -}}
- name: EHAC_KAFKA_GROUP_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{- define "ehac.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "ehac.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Readiness on /readyz and liveness on /healthz, both on the admin listener. */}}
{{- define "ehac.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  initialDelaySeconds: 10
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}

{{- define "ehac.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{/*
Values that would make a broken deployment fail the render instead.
Consumers: every replica count the chart or the autoscaler may set as a bound must divide the
partition count, so each member owns the same number of partitions; more members than
partitions would sit idle, and an idle member while its group has lag exits on purpose
(EHAC_KAFKA_UNASSIGNED_EXIT_SECS), so it would restart for ever.
*/}}
{{- define "ehac.checks" -}}
{{- $partitions := int .Values.kafka.partitions -}}
{{- if le $partitions 0 -}}
{{- fail "kafka.partitions must be positive" -}}
{{- end -}}
{{- range $name := list "enricher" "sink" -}}
{{- $c := index $.Values $name -}}
{{- $counts := list (int $c.replicas) -}}
{{- if $c.autoscaling.enabled -}}
{{- $counts = list (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas) -}}
{{- if gt (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas) -}}
{{- fail (printf "%s.autoscaling.minReplicas (%d) is above maxReplicas (%d)" $name (int $c.autoscaling.minReplicas) (int $c.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- range $n := $counts -}}
{{- if or (le $n 0) (ne (mod $partitions $n) 0) -}}
{{- fail (printf "%s: replica count %d does not divide kafka.partitions (%d); use one of its divisors so every member owns as many partitions" $name $n $partitions) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.gateway.clientsSecret) (not .Values.gateway.allowAnonymous) -}}
{{- fail "gateway.clientsSecret (a Secret holding the client registry clients.json) is required; gateway.allowAnonymous is for development only" -}}
{{- end -}}
{{- if not .Values.clickhouse.passwordsSecret -}}
{{- fail "clickhouse.passwordsSecret (a Secret with keys writer and migrator) is required" -}}
{{- end -}}
{{- if not .Values.enricher.pepperSecret -}}
{{- fail "enricher.pepperSecret (a Secret holding the traveller-key pepper) is required" -}}
{{- end -}}
{{- if not (has .Values.autoscalingMode (list "keda" "hpa")) -}}
{{- fail "autoscalingMode must be keda or hpa" -}}
{{- end -}}
{{- end -}}

{{/*
The pepper comes from its Secret as EHAC_PEPPER, not as a mounted file: the enricher refuses a
pepper file others than its owner can read, and Kubernetes makes Secret files group-readable
(fsGroup) or root-owned (without it), so a file would be refused or unreadable.
*/}}
{{- define "ehac.enricherEnv" -}}
- name: EHAC_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.enricher.pepperSecret | quote }}
      key: pepper
- name: EHAC_PEPPER_VERSION
  value: {{ .Values.enricher.pepperVersion | quote }}
- name: EHAC_ENRICHER_TRANSACTION_TIMEOUT_MS
  value: {{ .Values.enricher.transactionTimeoutMs | quote }}
{{- with .Values.enricher.registryUrl }}
- name: EHAC_REGISTRY_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "ehac.spoolDrainJob" -}}
backoffLimit: 6
ttlSecondsAfterFinished: 86400
template:
  metadata:
    labels: {{- include "ehac.labels" .ctx | nindent 6 }}
  spec:
    restartPolicy: OnFailure
    automountServiceAccountToken: false
    {{- with .root.Values.imagePullSecrets }}
    imagePullSecrets: {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      {{- include "ehac.podSecurity" .root | nindent 6 }}
      fsGroup: {{ .root.Values.securityContext.runAsUser }}
    containers:
      - name: drain
        image: {{ include "ehac.image" .root }}
        imagePullPolicy: {{ .root.Values.image.pullPolicy }}
        command: ["ehac", "spool", "drain", "--dir", "/var/lib/ehac/spool"]
        env:
          - name: EHAC_KAFKA_BROKERS
            value: {{ .root.Values.kafka.brokers | quote }}
          - name: EHAC_TOPIC_RAW
            value: {{ .root.Values.kafka.topics.raw | quote }}
        resources:
          requests: {cpu: 100m, memory: 64Mi}
          limits: {memory: 256Mi}
        securityContext: {{- include "ehac.containerSecurity" .root | nindent 10 }}
        volumeMounts:
          - name: spool
            mountPath: /var/lib/ehac/spool
    volumes:
      - name: spool
        persistentVolumeClaim:
          claimName: {{ .claim }}
{{- end -}}

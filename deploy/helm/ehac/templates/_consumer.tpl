{{/*
A consumer service (enricher, sink) as a StatefulSet: the pod name (ehac-enricher-0, ...) is
stable, so it is the member's static group.instance.id (EHAC_KAFKA_GROUP_INSTANCE_ID) and, for
the enricher, its transactional.id: a restarted pod gets its partitions back at once and fences
its predecessor's open transaction. No volumes: consumers keep their state in Kafka.
Arguments: root, component, values (the component's values), env (extra env, YAML text).
*/}}
{{- define "ehac.consumer" -}}
{{- $name := printf "%s-%s" (include "ehac.fullname" .root) .component -}}
{{- $ctx := dict "root" .root "component" .component -}}
{{- $v := .values -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-headless
  labels: {{- include "ehac.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  selector: {{- include "ehac.selector" $ctx | nindent 4 }}
  ports:
    - name: admin
      port: {{ $v.adminPort }}
      targetPort: admin
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels: {{- include "ehac.labels" $ctx | nindent 4 }}
spec:
  serviceName: {{ $name }}-headless
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  podManagementPolicy: Parallel
  selector:
    matchLabels: {{- include "ehac.selector" $ctx | nindent 6 }}
  template:
    metadata:
      labels: {{- include "ehac.labels" $ctx | nindent 8 }}
      annotations: {{- include "ehac.scrapeAnnotations" (dict "port" $v.adminPort) | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      {{- with .root.Values.imagePullSecrets }}
      imagePullSecrets: {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext: {{- include "ehac.podSecurity" .root | nindent 8 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels: {{- include "ehac.selector" $ctx | nindent 14 }}
      containers:
        - name: {{ .component }}
          image: {{ include "ehac.image" .root }}
          imagePullPolicy: {{ .root.Values.image.pullPolicy }}
          command: [{{ printf "ehac-%s" .component | quote }}]
          {{- with $v.extraArgs }}
          args: {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            - name: EHAC_ADMIN_LISTEN
              value: "0.0.0.0:{{ $v.adminPort }}"
            {{- include "ehac.kafkaEnv" .root | nindent 12 }}
            {{- include "ehac.instanceIdEnv" .root | nindent 12 }}
            {{- .env | nindent 12 }}
          ports:
            - name: admin
              containerPort: {{ $v.adminPort }}
          {{- include "ehac.probes" .root | nindent 10 }}
          resources: {{- toYaml $v.resources | nindent 12 }}
          securityContext: {{- include "ehac.containerSecurity" .root | nindent 12 }}
{{- end -}}

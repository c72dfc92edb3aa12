{{/* Names and labels shared by every template. */}}
{{- define "flotilla.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flotilla.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "flotilla.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "flotilla.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flotilla.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "ctx" $ "component" "controller"). */}}
{{- define "flotilla.selector" -}}
app.kubernetes.io/name: {{ include "flotilla.name" .ctx }}-{{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "flotilla.controller.name" -}}{{ include "flotilla.fullname" . }}-controller{{- end -}}
{{- define "flotilla.repoServer.name" -}}{{ include "flotilla.fullname" . }}-repo-server{{- end -}}
{{- define "flotilla.server.name" -}}{{ include "flotilla.fullname" . }}-server{{- end -}}
{{- define "flotilla.redis.name" -}}{{ include "flotilla.fullname" . }}-redis{{- end -}}

{{- define "flotilla.image" -}}
{{- printf "%s/%s:%s" .ctx.Values.image.repository .name (default .ctx.Chart.AppVersion .ctx.Values.image.tag) -}}
{{- end -}}

{{/* The repo-servers' address as the controller dials it. */}}
{{- define "flotilla.repoServer.address" -}}
{{- if .Values.controller.repoServerAddress -}}
{{- .Values.controller.repoServerAddress -}}
{{- else -}}
{{- printf "dns:///%s.%s.svc.cluster.local:%v" (include "flotilla.repoServer.name" .) .Release.Namespace .Values.repoServer.port -}}
{{- end -}}
{{- end -}}

{{/* FLOTILLA_REDIS_URL for both components, per redis.mode. */}}
{{- define "flotilla.redis.env" -}}
{{- if eq .Values.redis.mode "external" }}
{{- if .Values.redis.external.existingSecret }}
- name: FLOTILLA_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.existingSecretKey }}
{{- else }}
- name: FLOTILLA_REDIS_URL
  value: {{ required "redis.external.url or redis.external.existingSecret is required when redis.mode is external" .Values.redis.external.url | quote }}
{{- end }}
{{- else if eq .Values.redis.mode "bundled" }}
{{- $name := include "flotilla.redis.name" . }}
- name: FLOTILLA_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "flotilla.redis.authSecret" . }}
      key: password
{{- $first := printf "%s-0.%s.%s.svc.cluster.local:6379" $name $name .Release.Namespace }}
- name: FLOTILLA_REDIS_URL
  value: {{ printf "redis-cluster://:$(FLOTILLA_REDIS_PASSWORD)@%s" $first | quote }}
{{- end }}
{{- end -}}

{{- define "flotilla.tracing.env" -}}
{{- if .ctx.Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .ctx.Values.tracing.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .service | quote }}
{{- end }}
{{- end -}}

{{/* Hardened pod and container security contexts. */}}
{{- define "flotilla.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "flotilla.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "flotilla.serviceAccount.controller" -}}
{{- if .Values.serviceAccount.create -}}{{ include "flotilla.controller.name" . }}{{- else -}}default{{- end -}}
{{- end -}}
{{- define "flotilla.serviceAccount.server" -}}
{{- if .Values.serviceAccount.create -}}{{ include "flotilla.server.name" . }}{{- else -}}default{{- end -}}
{{- end -}}
{{- define "flotilla.serviceAccount.repoServer" -}}
{{- if .Values.serviceAccount.create -}}{{ include "flotilla.repoServer.name" . }}{{- else -}}default{{- end -}}
{{- end -}}

{{/* The Secret holding the repo-server token. */}}
{{- define "flotilla.repoToken.secret" -}}
{{- .Values.repoServer.auth.existingSecret | default (printf "%s-repo-server-token" (include "flotilla.fullname" .)) -}}
{{- end -}}

{{/* FLOTILLA_REPO_SERVER_TOKEN for both components. */}}
{{- define "flotilla.repoToken.env" -}}
- name: FLOTILLA_REPO_SERVER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "flotilla.repoToken.secret" . }}
      key: token
{{- end -}}

{{/* The Secret holding the bundled Redis password. */}}
{{- define "flotilla.redis.authSecret" -}}
{{- .Values.redis.bundled.existingSecret | default (printf "%s-redis-auth" (include "flotilla.fullname" .)) -}}
{{- end -}}

{{/* The Secret holding the repo-server's TLS certificate, key and CA. */}}
{{- define "flotilla.repoTls.secret" -}}
{{- .Values.repoServer.tls.existingSecret | default (printf "%s-repo-server-tls" (include "flotilla.fullname" .)) -}}
{{- end -}}

{{/* The Secret holding the token the API server presents to the controllers' /status routes. */}}
{{- define "flotilla.statusToken.secret" -}}
{{- .Values.server.statusToken.existingSecret | default (printf "%s-status-token" (include "flotilla.fullname" .)) -}}
{{- end -}}

{{/* FLOTILLA_STATUS_TOKEN for the API server and the controllers (the same value). */}}
{{- define "flotilla.statusToken.env" -}}
- name: FLOTILLA_STATUS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "flotilla.statusToken.secret" . }}
      key: token
{{- end -}}

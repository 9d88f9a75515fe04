{{/* Names and labels shared by every template. */}}

{{- define "slogate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slogate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service: 63 characters at most, like every DNS label. */}}
{{- define "slogate.headlessName" -}}
{{- printf "%s-headless" (include "slogate.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "slogate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "slogate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "slogate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slogate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "slogate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "slogate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "slogate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the PagerDuty routing key: the user's, or the one this chart creates. */}}
{{- define "slogate.pagerdutySecretName" -}}
{{- if .Values.pagerduty.existingSecret }}
{{- .Values.pagerduty.existingSecret }}
{{- else }}
{{- printf "%s-pagerduty" (include "slogate.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The configuration file: the user's `config`, with the keys that must agree with this chart
(listen addresses, paths on the mounted volumes) written over it.
*/}}
{{- define "slogate.config" -}}
{{- $data := "/var/lib/slogate" }}
{{- $managed := dict
  "server" (dict
    "otlp_grpc" (printf "0.0.0.0:%d" (int .Values.ports.otlpGrpc))
    "otlp_http" (printf "0.0.0.0:%d" (int .Values.ports.otlpHttp))
    "http" (printf "0.0.0.0:%d" (int .Values.ports.http)))
  "history" (dict "dir" (printf "%s/history" $data))
  "pagerduty" (dict "enabled" .Values.pagerduty.enabled "outbox_dir" (printf "%s/outbox" $data)) }}
{{- if .Values.pagerduty.enabled }}
{{- $_ := set $managed.pagerduty "routing_key_file" (printf "/etc/slogate/pagerduty/%s" .Values.pagerduty.secretKey) }}
{{- end }}
{{- $config := mustMergeOverwrite (deepCopy (default (dict) .Values.config)) $managed }}
{{- toYaml $config }}
{{- end }}

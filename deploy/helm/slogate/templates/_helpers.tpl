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

{{/* The Secret holding the Slack webhook URL: the user's, or the one this chart creates. */}}
{{- define "slogate.slackSecretName" -}}
{{- if .Values.slack.existingSecret }}
{{- .Values.slack.existingSecret }}
{{- else }}
{{- printf "%s-slack" (include "slogate.fullname" .) }}
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
Validations shared by the templates that depend on TLS and tokens.
*/}}
{{- define "slogate.validate" -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and .Values.tls.clientCASecretName (not .Values.tls.enabled) }}
{{- fail "tls.clientCASecretName (mutual TLS) needs tls.enabled" }}
{{- end }}
{{- if .Values.serviceMonitor.enabled }}
{{- if and .Values.auth.api.adminExistingSecret (not .Values.auth.api.readExistingSecret) }}
{{- fail "serviceMonitor with API tokens needs auth.api.readExistingSecret: Prometheus scrapes with a read token" }}
{{- end }}
{{- if and .Values.tls.clientCASecretName (not .Values.serviceMonitor.tlsConfig.certSecretName) }}
{{- fail "serviceMonitor with mutual TLS needs serviceMonitor.tlsConfig.certSecretName (Prometheus's client certificate)" }}
{{- end }}
{{- if and .Values.serviceMonitor.tlsConfig.caSecretName .Values.serviceMonitor.tlsConfig.caConfigMapName }}
{{- fail "serviceMonitor.tlsConfig: set caSecretName or caConfigMapName, not both" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The token Secrets that are set, as a YAML list: volume name, mount directory, Secret, keys, and
where the files go in the configuration.
*/}}
{{- define "slogate.tokenMounts" -}}
{{- $out := list }}
{{- with .Values.auth.ingest.existingSecret }}
{{- $out = append $out (dict "name" "ingest-token" "dir" "/etc/slogate/tokens/ingest" "secret" . "keys" $.Values.auth.ingest.keys "side" "ingest" "configKey" "token_files") }}
{{- end }}
{{- with .Values.auth.api.readExistingSecret }}
{{- $out = append $out (dict "name" "read-token" "dir" "/etc/slogate/tokens/read" "secret" . "keys" $.Values.auth.api.readKeys "side" "api" "configKey" "read_token_files") }}
{{- end }}
{{- with .Values.auth.api.adminExistingSecret }}
{{- $out = append $out (dict "name" "admin-token" "dir" "/etc/slogate/tokens/admin" "secret" . "keys" $.Values.auth.api.adminKeys "side" "api" "configKey" "admin_token_files") }}
{{- end }}
{{- toYaml $out }}
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
  "pagerduty" (dict "enabled" .Values.pagerduty.enabled "outbox_dir" (printf "%s/outbox" $data))
  "notifications" (dict
    "outbox_dir" (printf "%s/notify-outbox" $data)
    "slack" (dict "enabled" .Values.slack.enabled)) }}
{{- if .Values.slack.enabled }}
{{- $_ := set $managed.notifications.slack "webhook_url_file" (printf "/etc/slogate/slack/%s" .Values.slack.secretKey) }}
{{- end }}
{{- if .Values.pagerduty.enabled }}
{{- $_ := set $managed.pagerduty "routing_key_file" (printf "/etc/slogate/pagerduty/%s" .Values.pagerduty.secretKey) }}
{{- end }}
{{- $user := default (dict) .Values.config }}
{{- if hasKey (default (dict) $user.server) "tls" }}
{{- fail "config.server.tls is written by the chart: use the tls.* values" }}
{{- end }}
{{- if hasKey $user "auth" }}
{{- fail "config.auth is written by the chart: use the auth.* values (token Secrets)" }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" "/etc/slogate/tls/tls.crt" "key_file" "/etc/slogate/tls/tls.key" }}
{{- if .Values.tls.clientCASecretName }}
{{- $_ := set $tls "client_ca_file" (printf "/etc/slogate/client-ca/%s" .Values.tls.clientCAKey) }}
{{- end }}
{{- $_ := set $managed.server "tls" $tls }}
{{- end }}
{{- $auth := dict }}
{{- range $role := include "slogate.tokenMounts" . | fromYamlArray }}
{{- $files := list }}
{{- range $role.keys }}
{{- $files = append $files (printf "%s/%s" $role.dir .) }}
{{- end }}
{{- $side := get $auth $role.side | default (dict) }}
{{- $_ := set $side $role.configKey $files }}
{{- $_ := set $auth $role.side $side }}
{{- end }}
{{- if $auth }}
{{- $_ := set $managed "auth" $auth }}
{{- end }}
{{- $config := mustMergeOverwrite (deepCopy (default (dict) .Values.config)) $managed }}
{{- toYaml $config }}
{{- end }}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "dcgm-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: fullnameOverride, else the release name when it already contains the chart name,
     else "<release>-<chart>". Every object name derives from it, so two releases never clash. */}}
{{- define "dcgm-exporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "dcgm-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dcgm-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dcgm-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dcgm-exporter.labels" -}}
helm.sh/chart: {{ include "dcgm-exporter.chart" . }}
{{ include "dcgm-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gpu-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "dcgm-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dcgm-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion (toString .Values.image.tag)) -}}
{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.metricsConfigMap" -}}
{{- printf "%s-metrics" (include "dcgm-exporter.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dcgm-exporter.webConfigSecret" -}}
{{- printf "%s-web-config" (include "dcgm-exporter.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dcgm-exporter.tlsSecret" -}}
{{- default (printf "%s-tls" (include "dcgm-exporter.fullname" .) | trunc 63 | trimSuffix "-") .Values.tlsServerConfig.existingSecret -}}
{{- end -}}

{{/* True ("true"/"") when a web config file is needed. */}}
{{- define "dcgm-exporter.webConfigEnabled" -}}
{{- if or .Values.tlsServerConfig.enabled .Values.basicAuth.users -}}true{{- end -}}
{{- end -}}

{{/* Whether the pod needs a service-account token (API access). */}}
{{- define "dcgm-exporter.needsApi" -}}
{{- $k := .Values.kubernetes -}}
{{- if or (and (or $k.enablePodLabels $k.enablePodUID) $k.rbac.create) .Values.kubernetesDRA.enabled -}}true{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.automountToken" -}}
{{- $v := .Values.serviceAccount.automountServiceAccountToken -}}
{{- if kindIs "invalid" $v -}}
{{- ternary "true" "false" (eq (include "dcgm-exporter.needsApi" .) "true") -}}
{{- else -}}
{{- ternary "true" "false" (toString $v | eq "true") -}}
{{- end -}}
{{- end -}}

{{/* Go-style duration ("30s", "1m30s", "500ms", "1h") to milliseconds; fails naming the key.
     Call with (dict "key" "serviceMonitor.interval" "value" "15s"). */}}
{{- define "dcgm-exporter.durationMs" -}}
{{- $v := toString .value | trim -}}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $v) -}}
{{- fail (printf "%s: %q is not a duration such as 30s, 1m or 500ms" .key $v) -}}
{{- end -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+(ms|s|m|h)" $v -1 -}}
{{- $n := regexFind "^[0-9]+" $part | atoi -}}
{{- $unit := regexFind "(ms|s|m|h)$" $part -}}
{{- $mult := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit -}}
{{- $total = add $total (mul $n $mult) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* Collect interval in ms and where it came from, as "<ms> <source>". Precedence follows the
     exporter (flag > env var > default), then the chart's own values. */}}
{{- define "dcgm-exporter.collectInterval" -}}
{{- $args := list -}}
{{- range .Values.arguments }}{{ $args = append $args (include "dcgm-exporter.str" .) }}{{ end -}}
{{- $found := "" -}}
{{- range $i, $a := $args -}}
{{- if and (not $found) (or (eq $a "-c") (eq $a "--collect-interval") (eq $a "-collect-interval")) (lt (add1 $i) (len $args)) -}}
{{- $found = index $args (add1 $i) -}}
{{- else if and (not $found) (regexMatch "^--?(c|collect-interval)=" $a) -}}
{{- $found = regexReplaceAll "^--?(c|collect-interval)=" $a "" -}}
{{- end -}}
{{- end -}}
{{- if $found -}}
{{- if not (regexMatch "^[0-9]+$" $found) -}}
{{- fail (printf "arguments: the collect interval %q must be a whole number of milliseconds" $found) -}}
{{- end -}}
{{- printf "%s arguments" $found -}}
{{- else -}}
{{- $env := "" -}}
{{- range .Values.extraEnv -}}
{{- if and (eq (toString .name) "DCGM_EXPORTER_INTERVAL") (hasKey . "value") -}}{{ $env = include "dcgm-exporter.str" .value }}{{- end -}}
{{- end -}}
{{- if $env -}}
{{- if not (regexMatch "^[0-9]+$" $env) -}}
{{- fail (printf "extraEnv: DCGM_EXPORTER_INTERVAL %q must be a whole number of milliseconds" $env) -}}
{{- end -}}
{{- printf "%s extraEnv" $env -}}
{{- else if ne (toString (default "" .Values.collectInterval)) "" -}}
{{- $v := include "dcgm-exporter.str" .Values.collectInterval -}}
{{- if not (regexMatch "^[0-9]+$" $v) -}}
{{- fail (printf "collectInterval: %q must be a whole number of milliseconds, e.g. 30000" $v) -}}
{{- end -}}
{{- printf "%s collectInterval" $v -}}
{{- else if .Values.serviceMonitor.interval -}}
{{- printf "%s serviceMonitor.interval" (include "dcgm-exporter.durationMs" (dict "key" "serviceMonitor.interval" "value" .Values.serviceMonitor.interval)) -}}
{{- else -}}
30000 default
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.collectMs" -}}
{{- $ms := include "dcgm-exporter.collectInterval" . | splitList " " | first | atoi -}}
{{- if lt $ms 100 -}}
{{- fail (printf "the collect interval must be at least 100 ms, got %d" $ms) -}}
{{- end -}}
{{- $ms -}}
{{- end -}}

{{/* Scrape interval in ms: serviceMonitor.interval, else the collect interval. */}}
{{- define "dcgm-exporter.scrapeMs" -}}
{{- if .Values.serviceMonitor.interval -}}
{{- include "dcgm-exporter.durationMs" (dict "key" "serviceMonitor.interval" "value" .Values.serviceMonitor.interval) -}}
{{- else -}}
{{- include "dcgm-exporter.collectMs" . -}}
{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.msToDuration" -}}
{{- $ms := int . -}}
{{- if eq (mod $ms 1000) 0 -}}{{ div $ms 1000 }}s{{- else -}}{{ $ms }}ms{{- end -}}
{{- end -}}

{{/* Seconds after which the served snapshot counts as stale: three of the longer of the collect
     and scrape intervals. */}}
{{- define "dcgm-exporter.staleSeconds" -}}
{{- $c := include "dcgm-exporter.collectMs" . | atoi -}}
{{- $s := include "dcgm-exporter.scrapeMs" . | atoi -}}
{{- div (add (mul 3 (max $c $s)) 999) 1000 -}}
{{- end -}}

{{/* Whether an env var is already set by extraEnv (the user's entry wins). */}}
{{- define "dcgm-exporter.userEnv" -}}
{{- $want := .name -}}
{{- range .root.Values.extraEnv -}}{{- if eq (toString .name) $want -}}true{{- end -}}{{- end -}}
{{- end -}}

{{/* Upstream's default volume/mount for its counters ConfigMap (subPath mount of a hard-coded
     ConfigMap). This chart mounts its own ConfigMap as a directory instead, so it is skipped. */}}
{{- define "dcgm-exporter.isLegacyMetricsVolume" -}}
{{- if eq (toString .name) "exporter-metrics-volume" -}}true{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.serviceMonitorApi" -}}
{{- $api := .Values.serviceMonitor.apiVersion -}}
{{- if or .Values.serviceMonitor.force (.Capabilities.APIVersions.Has (printf "%s/ServiceMonitor" $api)) (.Capabilities.APIVersions.Has $api) -}}true{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.prometheusRuleApi" -}}
{{- $api := .Values.serviceMonitor.apiVersion -}}
{{- if or .Values.prometheusRule.force (.Capabilities.APIVersions.Has (printf "%s/PrometheusRule" $api)) (.Capabilities.APIVersions.Has $api) -}}true{{- end -}}
{{- end -}}

{{/* Probe handler: HTTP(S) GET on the path, or the TCP port when basic auth is on (probes cannot
     send credentials). */}}
{{- define "dcgm-exporter.probeHandler" -}}
{{- if .root.Values.basicAuth.users -}}
tcpSocket:
  port: metrics
{{- else -}}
httpGet:
  path: {{ .path }}
  port: metrics
  scheme: {{ ternary "HTTPS" "HTTP" (and .root.Values.tlsServerConfig.enabled true) }}
{{- end -}}
{{- end -}}

{{/* A scalar as text; whole numbers (which arrive as floats from JSON) without an exponent. */}}
{{- define "dcgm-exporter.str" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

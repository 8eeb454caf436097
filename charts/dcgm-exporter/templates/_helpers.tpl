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

{{/* Selector labels: keys and values exactly as upstream's chart (4.1.3 and later) sets them,
     so that "helm upgrade" of an upstream release keeps the DaemonSet's immutable selector. */}}
{{- define "dcgm-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dcgm-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ include "dcgm-exporter.name" . }}
{{- end -}}

{{- define "dcgm-exporter.labels" -}}
helm.sh/chart: {{ include "dcgm-exporter.chart" . }}
{{ include "dcgm-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
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

{{/* The counters ConfigMap and the Role that lets the exporter read it: upstream's fixed names
     (one release per namespace), or per-release names with upstreamConfigMapNames false. */}}
{{- define "dcgm-exporter.metricsConfigMap" -}}
{{- if .Values.upstreamConfigMapNames -}}
exporter-metrics-config-map
{{- else -}}
{{- printf "%s-metrics" (include "dcgm-exporter.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.readConfigMapRole" -}}
{{- if .Values.upstreamConfigMapNames -}}
dcgm-exporter-read-cm
{{- else -}}
{{- printf "%s-read-cm" (include "dcgm-exporter.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
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
{{- if or (and (or $k.enablePodLabels $k.enablePodUID .Values.workloadMetrics.enabled) $k.rbac.create) .Values.kubernetesDRA.enabled -}}true{{- end -}}
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
{{- else if include "dcgm-exporter.configFileInterval" . -}}
{{- printf "%s config.data" (include "dcgm-exporter.configFileInterval" .) -}}
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


{{- define "dcgm-exporter.serviceMonitorApi" -}}
{{- $api := .Values.serviceMonitor.apiVersion -}}
{{- if or .Values.serviceMonitor.force (.Capabilities.APIVersions.Has (printf "%s/ServiceMonitor" $api)) (.Capabilities.APIVersions.Has $api) -}}true{{- end -}}
{{- end -}}

{{- define "dcgm-exporter.prometheusRuleApi" -}}
{{- $api := .Values.serviceMonitor.apiVersion -}}
{{- if or .Values.prometheusRule.force (.Capabilities.APIVersions.Has (printf "%s/PrometheusRule" $api)) (.Capabilities.APIVersions.Has $api) -}}true{{- end -}}
{{- end -}}

{{/* True ("true"/"") when the kubelet's probes cannot use the metrics port: basic auth, or a
     client-certificate policy that turns away a client without one. The exporter then opens a
     plain-HTTP probe listener (/health and /ready only) on service.probePort. */}}
{{- define "dcgm-exporter.probeListener" -}}
{{- $tls := .Values.tlsServerConfig -}}
{{- if or .Values.basicAuth.users (and $tls.enabled (eq (toString $tls.clientAuthType) "RequireAndVerifyClientCert")) -}}true{{- end -}}
{{- end -}}

{{/* Probe handler: HTTP(S) GET on the path; on the probe listener when the metrics port needs
     credentials or a client certificate (docs/security.md). */}}
{{- define "dcgm-exporter.probeHandler" -}}
{{- if include "dcgm-exporter.probeListener" .root -}}
httpGet:
  path: {{ .path }}
  port: {{ .root.Values.service.probePort }}
  scheme: HTTP
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

{{/* Whether a text value is the default of an entry of files/unsupported-flags.yaml. */}}
{{- define "dcgm-exporter.isFlagDefault" -}}
{{- $v := .value | toString | trim | lower -}}
{{- if eq $v (lower (toString .flag.default)) -}}true
{{- else if and (eq .flag.kind "bool") (eq (toString .flag.default) "false") (has $v (list "false" "0" "f" "no" "")) -}}true
{{- end -}}
{{- end -}}

{{/* Fail the render, naming the key, when a value would set a flag or environment variable that
     the exporter refuses at start (files/unsupported-flags.yaml): better than a crash-looping
     pod. Checked: the chart's own keys that set such variables, extraEnv, and arguments. */}}
{{- define "dcgm-exporter.refuseUnsupported" -}}
{{- $flags := (.Files.Get "files/unsupported-flags.yaml" | fromYaml).flags -}}
{{- $ver := .Chart.AppVersion -}}
{{- $k := .Values.kubernetes -}}
{{- $fromKeys := list -}}
{{- if $k.enablePodLabels }}{{ $fromKeys = append $fromKeys (list "kubernetes.enablePodLabels" "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS" "true") }}{{ end -}}
{{- if $k.enablePodUID }}{{ $fromKeys = append $fromKeys (list "kubernetes.enablePodUID" "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_UID" "true") }}{{ end -}}
{{- if $k.podLabelAllowlistRegex }}{{ $fromKeys = append $fromKeys (list "kubernetes.podLabelAllowlistRegex" "DCGM_EXPORTER_KUBERNETES_POD_LABEL_ALLOWLIST_REGEX" (join "," $k.podLabelAllowlistRegex)) }}{{ end -}}
{{- if .Values.kubernetesDRA.enabled }}{{ $fromKeys = append $fromKeys (list "kubernetesDRA.enabled" "KUBERNETES_ENABLE_DRA" "true") }}{{ end -}}
{{- if .Values.debugDump.enabled }}{{ $fromKeys = append $fromKeys (list "debugDump.enabled" "DCGM_EXPORTER_DUMP_ENABLED" "true") }}{{ end -}}
{{- range $fromKeys -}}
{{- $key := index . 0 }}{{ $env := index . 1 }}{{ $val := index . 2 -}}
{{- range $flags -}}
{{- if and (eq .env $env) (not (include "dcgm-exporter.isFlagDefault" (dict "flag" . "value" $val))) -}}
{{- fail (printf "%s: not supported yet by gpu-exporter %s (it sets %s, which the exporter refuses at start, so the pod would crash-loop); remove the key or set it back to its default" $key $ver $env) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if hasKey . "value" -}}
{{- $name := toString .name }}{{ $val := include "dcgm-exporter.str" .value -}}
{{- range $flags -}}
{{- if and (eq .env $name) (not (include "dcgm-exporter.isFlagDefault" (dict "flag" . "value" $val))) -}}
{{- fail (printf "extraEnv: %s is not supported yet by gpu-exporter %s (the exporter refuses it at start, so the pod would crash-loop); remove it" $name $ver) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $args := list -}}
{{- range .Values.arguments }}{{ $args = append $args (include "dcgm-exporter.str" .) }}{{ end -}}
{{- range $i, $a := $args -}}
{{- if hasPrefix "-" $a -}}
{{- $bare := regexReplaceAll "=.*$" $a "" | trimPrefix "-" | trimPrefix "-" -}}
{{- range $flags -}}
{{- $flag := . -}}
{{- range .names -}}
{{- if eq (trimPrefix "-" (trimPrefix "-" .)) $bare -}}
{{- $val := "true" -}}
{{- if contains "=" $a -}}{{ $val = regexReplaceAll "^[^=]*=" $a "" }}
{{- else if and (ne $flag.kind "bool") (lt (add1 $i) (len $args)) -}}{{ $val = index $args (add1 $i) }}
{{- end -}}
{{- if not (include "dcgm-exporter.isFlagDefault" (dict "flag" $flag "value" $val)) -}}
{{- fail (printf "arguments: %s is not supported yet by gpu-exporter %s (the exporter refuses it at start, so the pod would crash-loop); remove it" $a $ver) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The pod's node selector: nodeSelector when it is not empty; when it is empty (upstream's
     default), nvidia.com/gpu.present=true if gpuNodesOnly; none when nodeSelector is null. */}}
{{- define "dcgm-exporter.nodeSelector" -}}
{{- if kindIs "map" .Values.nodeSelector -}}
{{- $sel := dict -}}
{{- range $k, $v := .Values.nodeSelector }}{{ if not (kindIs "invalid" $v) }}{{ $_ := set $sel $k $v }}{{ end }}{{ end -}}
{{- if and (not $sel) .Values.gpuNodesOnly -}}
{{- $sel = dict "nvidia.com/gpu.present" "true" -}}
{{- end -}}
{{- with $sel }}{{ toYaml . }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* How the chart mounts its config volume next to the user's extra mounts, as JSON:
     skip: extra volumes that are upstream's own counters mount (its ConfigMap
       exporter-metrics-config-map at /etc/dcgm-exporter/default-counters.csv): the chart's
       directory mount provides that same file, so they are left out;
     taken: paths under /etc/dcgm-exporter that the user's mounts occupy;
     perFile: true when taken is not empty: the chart then mounts its files one by one (subPath)
       instead of the whole directory, since a mount cannot nest inside a read-only volume. */}}
{{- define "dcgm-exporter.mountPlan" -}}
{{- $upstreamCm := "exporter-metrics-config-map" -}}
{{- $skip := list -}}
{{- range $i, $v := .Values.extraConfigMapVolumes -}}
{{- if and (kindIs "map" $v.configMap) (eq (toString $v.configMap.name) $upstreamCm) -}}
{{- $onlyDefault := true -}}
{{- range $.Values.extraVolumeMounts -}}
{{- if and (eq (toString .name) (toString $v.name)) (ne (toString .mountPath) "/etc/dcgm-exporter/default-counters.csv") -}}{{ $onlyDefault = false }}{{- end -}}
{{- end -}}
{{- if $onlyDefault -}}
{{- $skip = append $skip (toString $v.name) -}}
{{- else if not $.Values.upstreamConfigMapNames -}}
{{- fail (printf "extraConfigMapVolumes[%d]: ConfigMap %s does not exist with upstreamConfigMapNames false (this release's counters ConfigMap is %s); use that name" $i $upstreamCm (include "dcgm-exporter.metricsConfigMap" $)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $taken := list -}}
{{- range $i, $m := .Values.extraVolumeMounts -}}
{{- if not (has (toString $m.name) $skip) -}}
{{- $p := toString $m.mountPath | trimSuffix "/" -}}
{{- if eq $p "/etc/dcgm-exporter" -}}
{{- fail (printf "extraVolumeMounts[%d]: mountPath /etc/dcgm-exporter would hide the chart's counters files; mount single files under it with subPath (e.g. /etc/dcgm-exporter/custom.csv) or use another directory, and pass the file with -f in arguments (or use customMetrics)" $i) -}}
{{- else if hasPrefix "/etc/dcgm-exporter/" $p -}}
{{- $rel := trimPrefix "/etc/dcgm-exporter/" $p -}}
{{- if and (include "dcgm-exporter.webConfigEnabled" $) (or (eq $rel "web-config.yaml") (eq $rel "tls") (hasPrefix "tls/" $rel)) -}}
{{- fail (printf "extraVolumeMounts[%d]: %s is where the chart mounts its web configuration (tlsServerConfig, basicAuth); choose another path" $i $p) -}}
{{- end -}}
{{- $taken = append $taken $rel -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "skip" $skip "taken" $taken "perFile" (gt (len $taken) 0)) -}}
{{- end -}}

{{/* The YAML configuration file (config.*): ConfigMap name, content, and checks. */}}
{{- define "dcgm-exporter.configFileMap" -}}
{{- default (printf "%s-config" (include "dcgm-exporter.fullname" .) | trunc 63 | trimSuffix "-") .Values.config.name -}}
{{- end -}}

{{- define "dcgm-exporter.configFileText" -}}
{{- $d := .Values.config.data -}}
{{- if kindIs "map" $d }}{{ toYaml $d }}{{ else }}{{ toString (default "" $d) }}{{ end -}}
{{- end -}}

{{/* collection.interval of the chart-created configuration file in ms, or "". */}}
{{- define "dcgm-exporter.configFileInterval" -}}
{{- $c := .Values.config -}}
{{- if and $c.enabled $c.create -}}
{{- $file := include "dcgm-exporter.configFileText" . | fromYaml -}}
{{- $v := dig "collection" "interval" "" $file -}}
{{- if $v -}}
{{- include "dcgm-exporter.durationMs" (dict "key" "config.data: collection.interval" "value" $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Fail, naming the key, for a configuration file that cannot work as written: missing, not
     YAML, or with settings that the arguments or environment would silently override (flags
     and environment variables win over the file in the exporter). */}}
{{- define "dcgm-exporter.checkConfigFile" -}}
{{- $c := .Values.config -}}
{{- if $c.enabled -}}
{{- if and (not $c.create) (not $c.name) -}}
{{- fail "config.name: required when config.create is false (the existing ConfigMap holding the configuration file)" -}}
{{- end -}}
{{- if $c.create -}}
{{- $text := include "dcgm-exporter.configFileText" . -}}
{{- if not (trim $text) -}}
{{- fail "config.data: empty; give the configuration file (version: 1, metrics, collection), or set config.create=false and config.name to an existing ConfigMap" -}}
{{- end -}}
{{- $file := $text | fromYaml -}}
{{- if hasKey $file "Error" -}}
{{- fail (printf "config.data: not a YAML map: %s" $file.Error) -}}
{{- end -}}
{{- $args := list -}}
{{- range .Values.arguments }}{{ $args = append $args (include "dcgm-exporter.str" .) }}{{ end -}}
{{- $envs := list -}}
{{- range .Values.extraEnv }}{{ $envs = append $envs (toString .name) }}{{ end -}}
{{- if hasKey $file "metrics" -}}
{{- range $args -}}
{{- if regexMatch "^--?(f|collectors)(=.*)?$" . -}}
{{- fail (printf "config.data: metrics is overridden by %s in arguments (flags win over the configuration file); remove -f and its value from arguments" .) -}}
{{- end -}}
{{- end -}}
{{- if has "DCGM_EXPORTER_COLLECTORS" $envs -}}
{{- fail "config.data: metrics is overridden by DCGM_EXPORTER_COLLECTORS in extraEnv; remove one of them" -}}
{{- end -}}
{{- end -}}
{{- if include "dcgm-exporter.configFileInterval" . -}}
{{- $source := include "dcgm-exporter.collectInterval" . | splitList " " | last -}}
{{- if has $source (list "arguments" "extraEnv" "collectInterval") -}}
{{- fail (printf "config.data: collection.interval is overridden by the collect interval from %s (flags and environment variables win over the configuration file); set it in one place" $source) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* workloadMetrics: refuse values that would clash with its /host/proc volume and mount. */}}
{{- define "dcgm-exporter.checkWorkloadMetrics" -}}
{{- if .Values.workloadMetrics.enabled -}}
{{- range $key := list "extraHostVolumes" "extraConfigMapVolumes" -}}
{{- range $i, $v := index $.Values $key -}}
{{- if eq (toString $v.name) "host-proc" -}}
{{- fail (printf "%s[%d]: the volume name host-proc is taken by workloadMetrics (the host's /proc); choose another name" $key $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $i, $m := .Values.extraVolumeMounts -}}
{{- $p := toString $m.mountPath | trimSuffix "/" -}}
{{- if or (eq $p "/host/proc") (hasPrefix "/host/proc/" $p) -}}
{{- fail (printf "extraVolumeMounts[%d]: %s is where workloadMetrics mounts the host's /proc; choose another path" $i $p) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The alert rules of files/rules.yml with the placeholders filled from the values, as YAML
     text (the same text deploy/rules.yml holds for the default values). */}}
{{- define "dcgm-exporter.rulesText" -}}
{{- $r := .Values.prometheusRule -}}
{{- $codes := list -}}
{{- range $r.xidCodes }}{{ $codes = append $codes (include "dcgm-exporter.str" .) }}{{ end -}}
{{- if not $codes }}{{ fail "prometheusRule.xidCodes must list at least one XID code" }}{{ end -}}
{{- .Files.Get "files/rules.yml"
    | replace "${JOB_REGEX}" $r.jobRegex
    | replace "${XID_CODES}" (join "|" $codes)
    | replace "${STALE_SECONDS}" (include "dcgm-exporter.staleSeconds" .)
    | replace "${RUNBOOK_URL}" $r.runbookBaseUrl -}}
{{- end -}}

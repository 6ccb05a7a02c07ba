{{/* The chart's name, or nameOverride. */}}
{{- define "mountwatchd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: fullnameOverride, else the release name if it contains
the chart's name, else <release>-<chart>. Truncated to 63 characters, the
limit of some name fields.
*/}}
{{- define "mountwatchd.fullname" -}}
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

{{- define "mountwatchd.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "mountwatchd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: the DaemonSet's selector, the Service's, the pods'. */}}
{{- define "mountwatchd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mountwatchd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "mountwatchd.labels" -}}
helm.sh/chart: {{ include "mountwatchd.chart" . }}
{{ include "mountwatchd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mountwatchd
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mountwatchd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mountwatchd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: registry/repository, then @digest or :tag (default v<appVersion>). */}}
{{- define "mountwatchd.image" -}}
{{- $repo := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repo = printf "%s/%s" . $repo }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default (printf "v%s" .Chart.AppVersion)) }}
{{- end }}
{{- end }}

{{/* The metrics port. */}}
{{- define "mountwatchd.port" -}}
{{- .Values.service.port | int }}
{{- end }}

{{/*
Runbook links: files/mountwatchd.rules.yml and files/mountwatchd-dashboard.json
link each alert and check to its page under the repository's docs/
(docs/checks/<check>.md, docs/alerts/<Alert>.md); this replaces that base
with .Values.runbookBaseURL. Call with (list $ <text>).
*/}}
{{- define "mountwatchd.runbooks" -}}
{{- $root := index . 0 }}
{{- $text := index . 1 }}
{{- $repoDocs := "https://github.com/mountwatchd/mountwatchd/blob/main/docs/" }}
{{- if not (contains $repoDocs $text) }}{{ fail (printf "no link under %s to replace" $repoDocs) }}{{ end }}
{{- $base := printf "%s/" (trimSuffix "/" (required "runbookBaseURL" $root.Values.runbookBaseURL)) }}
{{- replace $repoDocs $base $text }}
{{- end }}

{{/* "true" when mountwatchd talks to the API server (a kubeAPI switch is on), else "". */}}
{{- define "mountwatchd.kubeAPI" -}}
{{- if or .Values.kubeAPI.events .Values.kubeAPI.condition .Values.kubeAPI.taint }}true{{ end }}
{{- end }}

{{/* The name of every object: the release name, unless it already says reach. */}}
{{- define "reach.fullname" -}}
{{- if contains "reach" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-reach" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "reach.selectorLabels" -}}
app.kubernetes.io/name: reach
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "reach.labels" -}}
{{ include "reach.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The CRI socket's directory: mounted, not the socket itself, so a runtime restart (a new
     socket inode) does not leave reach with a stale bind mount. */}}
{{- define "reach.criDir" -}}
{{- dir .Values.cri.socket -}}
{{- end -}}

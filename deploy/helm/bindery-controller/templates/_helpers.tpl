{{- define "bindery-controller.labels" -}}
app.kubernetes.io/name: bindery-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
{{- define "bindery-controller.selector" -}}
app.kubernetes.io/name: bindery-controller
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

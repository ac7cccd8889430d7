{{/* The chart's name, or nameOverride. */}}
{{- define "bindery.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of every object: the release name when it contains the chart's name. */}}
{{- define "bindery.fullname" -}}
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

{{/* Labels that select the pods; never change them on an installed release. */}}
{{- define "bindery.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bindery.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "bindery.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bindery.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret with `username` and `password`, read by the broker and Service Catalog. */}}
{{- define "bindery.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-broker-auth" (include "bindery.fullname" .)) }}
{{- end }}

{{/* The Secret with the broker's other secrets. */}}
{{- define "bindery.secretName" -}}
{{- .Values.existingSecret | default (include "bindery.fullname" .) }}
{{- end }}

{{/* The catalog's text: .Values.catalog, else files/catalog.yaml. */}}
{{- define "bindery.catalog" -}}
{{- if .Values.catalog }}{{ .Values.catalog }}{{ else }}{{ .Files.Get "files/catalog.yaml" }}{{ end }}
{{- end }}

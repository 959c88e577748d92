{{/* Names and labels shared by every template. */}}

{{- define "tso.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tso.fullname" -}}
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

{{- define "tso.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tso.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tso.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tso.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tradingsystem
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tso.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tso.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the namespace too: one release name per namespace is unique. */}}
{{- define "tso.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "tso.fullname" .) }}
{{- end }}

{{- define "tso.subjects" -}}
- kind: ServiceAccount
  name: {{ include "tso.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "tso.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespaces the operator watches when not cluster-wide. */}}
{{- define "tso.watchNamespaces" -}}
{{- if .Values.watchNamespaces }}
{{- toJson .Values.watchNamespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* The operator's least-privilege rules: those of the ClusterRole in files/rbac.yaml, a copy
of the operator package's rbac.yaml (a multi-document manifest). */}}
{{- define "tso.rules" -}}
{{- range splitList "\n---\n" (.Files.Get "files/rbac.yaml") }}
{{- $doc := fromYaml . }}
{{- if eq (get $doc "kind") "ClusterRole" }}
{{- toJson $doc.rules }}
{{- end }}
{{- end }}
{{- end }}

{{/* The leader-election rules: those of the Role in files/rbac.yaml (Leases in the operator's own
namespace). */}}
{{- define "tso.leaseRules" -}}
{{- range splitList "\n---\n" (.Files.Get "files/rbac.yaml") }}
{{- $doc := fromYaml . }}
{{- if eq (get $doc "kind") "Role" }}
{{- toJson $doc.rules }}
{{- end }}
{{- end }}
{{- end }}

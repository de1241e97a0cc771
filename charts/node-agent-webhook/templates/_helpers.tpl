{{/* Chart name, and the name every object gets (the release name when it contains the chart's). */}}
{{- define "naw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "naw.fullname" -}}
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

{{/*
The name of the cluster-scoped objects (ClusterRole, ClusterRoleBinding, both webhook
configurations): <fullname>.<namespace>, so the same release name installs once per Velero
namespace (as manifests/base names them; a namespace has no dots, so the name stays unambiguous).
*/}}
{{- define "naw.clusterScopedName" -}}
{{- printf "%s.%s" (include "naw.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Selector labels: immutable in a Deployment, so only these two, never the version. */}}
{{- define "naw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "naw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object (the same part-of/component as the kustomize base). */}}
{{- define "naw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "naw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: velero
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "naw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "naw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods mount: tls.crt and tls.key (and ca.crt but in secret mode). */}}
{{- define "naw.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" }}
{{- required "certificates.secret.name is required when certificates.mode is secret" .Values.certificates.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "naw.fullname" .) }}
{{- end }}
{{- end }}

{{/* The DNS name the API server dials for clientConfig.service. */}}
{{- define "naw.serviceHost" -}}
{{- printf "%s.%s.svc" (include "naw.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
The generated CA and serving certificate (certificates.mode=generate), base64-encoded, computed
once per render and shared by the Secret and both webhook configurations: every template reads
the same root context, so the first caller stores them there (key nawGeneratedTLS).
An existing Secret of the release (helm upgrade) is reused as it is, so an upgrade never rotates
the CA the API server trusts. Delete the Secret to get new certificates on the next upgrade.
*/}}
{{- define "naw.generatedTLS" -}}
{{- if not (hasKey . "nawGeneratedTLS") }}
{{- $tls := dict }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "naw.tlsSecretName" .) }}
{{- $data := dict }}
{{- if and $existing (hasKey $existing "data") }}
{{- $data = $existing.data }}
{{- end }}
{{- if and (hasKey $data "ca.crt") (hasKey $data "tls.crt") (hasKey $data "tls.key") }}
{{- $tls = dict "ca" (index $data "ca.crt") "crt" (index $data "tls.crt") "key" (index $data "tls.key") "reused" true }}
{{- else }}
{{- $host := include "naw.serviceHost" . }}
{{- $ca := genCA (printf "%s-ca" (include "naw.fullname" .)) (int .Values.certificates.generate.caValidityDays) }}
{{- $cert := genSignedCert $host nil (list $host (printf "%s.cluster.local" $host)) (int .Values.certificates.generate.certValidityDays) $ca }}
{{- $tls = dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) "reused" false }}
{{- end }}
{{- $_ := set . "nawGeneratedTLS" $tls }}
{{- end }}
{{- end }}

{{/* The base64 PEM CA for clientConfig.caBundle; empty in cert-manager mode (cainjector fills it). */}}
{{- define "naw.caBundle" -}}
{{- if eq .Values.certificates.mode "generate" }}
{{- include "naw.generatedTLS" . }}
{{- .nawGeneratedTLS.ca }}
{{- else if eq .Values.certificates.mode "secret" }}
{{- $pem := required "certificates.secret.caBundle is required when certificates.mode is secret" .Values.certificates.secret.caBundle | trim }}
{{- if hasPrefix "-----BEGIN" $pem }}{{ $pem | b64enc }}{{ else }}{{ $pem }}{{ end }}
{{- end }}
{{- end }}

{{/* The cert-manager Certificate whose CA cainjector copies into caBundle. */}}
{{- define "naw.servingCertificateName" -}}
{{- printf "%s-serving-cert" (include "naw.fullname" .) }}
{{- end }}

{{/* metadata.annotations of both webhook configurations (cert-manager mode only). */}}
{{- define "naw.webhookAnnotations" -}}
{{- if eq .Values.certificates.mode "cert-manager" }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "naw.servingCertificateName" .) }}
{{- end }}
{{- end }}

{{/* clientConfig of a webhook: the Service on 443 and the path (dict "root" $ "path" "/x"). */}}
{{- define "naw.clientConfig" -}}
{{- $ca := include "naw.caBundle" .root }}
clientConfig:
  service:
    name: {{ include "naw.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- if $ca }}
  caBundle: {{ $ca }}
  {{- end }}
{{- end }}

{{/* Only requests in the release (Velero) namespace reach the webhooks. */}}
{{- define "naw.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    # Set by the API server on every namespace and immutable.
    - key: kubernetes.io/metadata.name
      operator: In
      values: [{{ .Release.Namespace | quote }}]
{{- end }}

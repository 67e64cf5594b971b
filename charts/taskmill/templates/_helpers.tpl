{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "taskmill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: the release name, plus the chart name unless it already contains it. */}}
{{- define "taskmill.fullname" -}}
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

{{/* Labels every resource carries. */}}
{{- define "taskmill.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "taskmill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: taskmill
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component ("operator" or "worker"): pass (list $ "operator"). */}}
{{- define "taskmill.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "taskmill.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "taskmill.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "taskmill.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "taskmill.workerServiceAccount" -}}
{{- if .Values.worker.serviceAccount.create }}
{{- default (printf "%s-worker" (include "taskmill.fullname" .)) .Values.worker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.worker.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "taskmill.leaderLeaseName" -}}
{{- default (printf "%s-leader" (include "taskmill.fullname" .)) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{/* The namespaces the operator watches in namespaced scope (a list). */}}
{{- define "taskmill.watchNamespaces" -}}
{{- if .Values.rbac.namespaces }}
{{- toJson .Values.rbac.namespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* image reference: pass (dict "image" <values> "fallback" .Values.image "root" $). */}}
{{- define "taskmill.image" -}}
{{- $repo := default .fallback.repository .image.repository }}
{{- $digest := default .fallback.digest .image.digest }}
{{- $tag := default (default .root.Chart.AppVersion .fallback.tag) .image.tag }}
{{- if $digest }}
{{- printf "%s@%s" $repo $digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{/* The lease API URL workers use. */}}
{{- define "taskmill.leaseUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "taskmill.fullname" .) .Release.Namespace (int .Values.leaseApi.port) }}
{{- end }}

{{/* Refuse leader-election timings the operator would refuse at start
(LeaderElector: retry < renew deadline < lease duration), so the mistake
shows at install, not as a crash-looping Deployment. */}}
{{- define "taskmill.validateLeaderElection" -}}
{{- with .Values.operator.leaderElection }}
{{- if .enabled }}
{{- if ge (float64 .renewDeadlineSeconds) (float64 .leaseDurationSeconds) }}
{{- fail (printf "operator.leaderElection: renewDeadlineSeconds (%v) must be less than leaseDurationSeconds (%v), or a standby could take over while the leader still dispatches" .renewDeadlineSeconds .leaseDurationSeconds) }}
{{- end }}
{{- if ge (float64 .retryPeriodSeconds) (float64 .renewDeadlineSeconds) }}
{{- fail (printf "operator.leaderElection: retryPeriodSeconds (%v) must be less than renewDeadlineSeconds (%v), or the leader could not renew even once before stepping down" .retryPeriodSeconds .renewDeadlineSeconds) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The NetworkPolicyPeer of the metrics scraper (monitoring.scraper). */}}
{{- define "taskmill.scraperPeer" -}}
- namespaceSelector:
    {{- toYaml .Values.monitoring.scraper.namespaceSelector | nindent 4 }}
  podSelector:
    {{- toYaml .Values.monitoring.scraper.podSelector | nindent 4 }}
{{- end }}

{{/* Label matchers picking this release's operator series in alert rules. */}}
{{- define "taskmill.operatorSeries" -}}
{{- default (printf "job=%q" (include "taskmill.fullname" .)) .Values.monitoring.prometheusRule.selector }}
{{- end }}

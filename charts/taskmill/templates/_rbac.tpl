{{/* The operator's rules on Taskmill's resources (cluster or namespaced scope alike). */}}
{{- define "taskmill.operatorRules" -}}
# Watch Tasks; create them (CronTask children) and delete them (TTL after
# finishing). No update/patch: the operator never writes a Task's spec.
- apiGroups: [taskmill.dev]
  resources: [tasks]
  verbs: [get, list, watch, create, delete]
# Phases, leases and results: only through the status subresource.
- apiGroups: [taskmill.dev]
  resources: [tasks/status, crontasks/status]
  verbs: [get, patch, update]
- apiGroups: [taskmill.dev]
  resources: [crontasks, taskqueues]
  verbs: [get, list, watch]
# CronTask children carry an ownerReference with blockOwnerDeletion, which
# clusters enforcing OwnerReferencesPermissionEnforcement only allow to
# those who may update the owner's finalizers.
- apiGroups: [taskmill.dev]
  resources: [crontasks/finalizers]
  verbs: [update]
# Warning Events on Tasks (rate-limited by the operator).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.rbac.payloadFrom }}
# spec.payloadFrom: read the referenced ConfigMap or Secret key.
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [get]
{{- end }}
{{- end }}

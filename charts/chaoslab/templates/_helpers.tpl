{{/*
The chart name, or nameOverride.
*/}}
{{- define "chaoslab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name, with the chart
name appended unless the release name already contains it. Truncated to 63 characters (DNS label).
*/}}
{{- define "chaoslab.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "chaoslab.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "chaoslab.labels" -}}
helm.sh/chart: {{ include "chaoslab.chart" . }}
{{ include "chaoslab.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: chaoslab
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades (no version).
*/}}
{{- define "chaoslab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chaoslab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount the operator runs as.
*/}}
{{- define "chaoslab.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chaoslab.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image reference.
*/}}
{{- define "chaoslab.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}

{{/*
The Lease the operator holds while it is the leader.
*/}}
{{- define "chaoslab.leaseName" -}}
{{- default (printf "%s-operator" (include "chaoslab.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The opt-in label as KEY=VALUE.
*/}}
{{- define "chaoslab.optInLabel" -}}
{{- printf "%s=%s" (required "optInLabel.key is required" .Values.optInLabel.key) (toString .Values.optInLabel.value) }}
{{- end }}

{{/*
Name of the ClusterRole holding the rules on namespaced objects (experiments, pods, events,
owners). Bound cluster-wide when watchNamespaces is empty, per watched namespace otherwise.
*/}}
{{- define "chaoslab.clusterRoleName" -}}
{{- include "chaoslab.fullname" . }}
{{- end }}

{{/*
Name of the small ClusterRole for cluster-scoped reads (Namespace objects), used when
watchNamespaces is set.
*/}}
{{- define "chaoslab.namespaceReaderName" -}}
{{- printf "%s-namespace-reader" (include "chaoslab.fullname" . | trunc 46 | trimSuffix "-") }}
{{- end }}

{{/*
The rules on namespaced objects. docs/install.md explains each one; keep both in step.
*/}}
{{- define "chaoslab.namespacedRules" -}}
# The six chaoslab kinds: reconcile them.
- apiGroups: ["chaoslab.dev"]
  resources:
    - loadtests
    - podkills
    - servicefaults
    - circuitbreakertrials
    - autoscalingchecks
    - drills
  verbs: ["get", "list", "watch", "patch", "update"]
# A Drill runs through the other kinds: it creates a LoadTest for its load and a ServiceFault or
# PodKill per fault, owned by it (it ends them early with the abort annotation: patch, above).
- apiGroups: ["chaoslab.dev"]
  resources:
    - loadtests
    - podkills
    - servicefaults
  verbs: ["create"]
# Their status subresource: record phase, verdict and figures.
- apiGroups: ["chaoslab.dev"]
  resources:
    - loadtests/status
    - podkills/status
    - servicefaults/status
    - circuitbreakertrials/status
    - autoscalingchecks/status
    - drills/status
  verbs: ["get", "patch", "update"]
# Their finalizers subresource: needed to set blockOwnerDeletion on objects they own.
- apiGroups: ["chaoslab.dev"]
  resources:
    - loadtests/finalizers
    - podkills/finalizers
    - servicefaults/finalizers
    - circuitbreakertrials/finalizers
    - autoscalingchecks/finalizers
    - drills/finalizers
  verbs: ["update"]
# Pods: choose targets, watch replacements become Ready, kill with delete.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
# Kill with the Eviction API, so PodDisruptionBudgets are respected.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# Events on the experiments (kube's recorder writes events.k8s.io/v1 only; patch counts repeats).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# A killed pod's owner: does it still exist (recovery is judged only if it does)?
- apiGroups: ["apps"]
  resources: ["replicasets", "statefulsets", "daemonsets"]
  verbs: ["get"]
# LoadTest runners: an Indexed Job per LoadTest, owned by it; stopped by deleting it.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Runner reports: one ConfigMap per runner, read to merge the figures and deleted with the run.
# The operator also holds every right it grants the runners, which RBAC requires of a binding.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Services: resolve a LoadTest's target; for a ServiceFault, claim the target (annotations),
# switch its selector to the proxy and back, and create and delete the shadow Service.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
# ServiceFault: the proxy Deployment, owned by the fault; its readiness is watched.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "delete"]
# AutoscalingCheck: find the HPA that scales the Deployment and sample its desired count.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list"]
# ServiceFault: injection begins when the target's endpoints are the proxy's pods.
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
# The runners' identity in each namespace that runs a LoadTest.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["get", "create"]
{{- end }}

{{/*
Name of the ClusterRole the LoadTest runner pods are bound to (by a RoleBinding the operator
creates in the LoadTest's namespace).
*/}}
{{- define "chaoslab.runnerRoleName" -}}
{{- printf "%s-runner" (include "chaoslab.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/*
The rule on cluster-scoped objects: read Namespaces to check the opt-in label.
*/}}
{{- define "chaoslab.clusterScopedRules" -}}
# Namespaces: check the opt-in label of an experiment's namespace.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}

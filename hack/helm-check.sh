#!/usr/bin/env bash
# Lints the chart and renders it with the value combinations that matter, with the pinned helm
# that hack/tools.sh builds. Run from anywhere; `make helm-check` runs it.
#
# --kube-version: render against the oldest Kubernetes the operator is built for (k8s-openapi
# v1_33), not the version helm assumes offline, so the chart's kubeVersion range is exercised.
set -euo pipefail

cd "$(dirname "$0")/.."

CHART=charts/chaoslab
KUBE_VERSION=1.33.0

fail() { printf 'helm-check: FAIL: %s\n' "$*" >&2; exit 1; }
step() { printf 'helm-check: %s\n' "$*" >&2; }

tools_bin=$(bash hack/tools.sh) || fail "hack/tools.sh could not provide the tools (see its output above)"
export PATH="$tools_bin:$PATH"
command -v helm >/dev/null 2>&1 || fail "helm is not on PATH after hack/tools.sh (looked in $tools_bin)"
step "using $(command -v helm) ($(helm version --short 2>/dev/null || echo 'unknown version'))"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

step "helm lint --strict $CHART"
helm lint --strict --kube-version "$KUBE_VERSION" "$CHART" \
  || fail "helm lint --strict $CHART"
helm lint --strict --kube-version "$KUBE_VERSION" "$CHART" \
  --set 'watchNamespaces={a,b}' --set leaderElection.enabled=false \
  || fail "helm lint --strict $CHART with watchNamespaces={a,b}, leaderElection.enabled=false"
helm lint --strict --kube-version "$KUBE_VERSION" "$CHART" --set demo.enabled=true \
  || fail "helm lint --strict $CHART with demo.enabled=true"

# render NAME ARGS...: helm template into $out/NAME.yaml, failing loudly on any error.
render() {
  local name=$1; shift
  step "helm template ($name)"
  helm template chaoslab "$CHART" --namespace chaoslab-system --kube-version "$KUBE_VERSION" "$@" \
    >"$out/$name.yaml" || fail "helm template $CHART ($name) did not render"
  [ -s "$out/$name.yaml" ] || fail "helm template $CHART ($name) rendered nothing"
}

render defaults
render watch-namespaces --set 'watchNamespaces={a,b}' --set leaderElection.enabled=false
render demo --set demo.enabled=true

# A few cheap sanity checks on top of tests/it/chart.rs, which checks the rendered objects in depth.
grep -q '^kind: Deployment$' "$out/defaults.yaml" || fail "default render has no Deployment"
grep -q '^kind: ClusterRoleBinding$' "$out/defaults.yaml" || fail "default render has no ClusterRoleBinding"
grep -q '^kind: Role$' "$out/defaults.yaml" || fail "default render has no leader-election Role"
[ "$(grep -c '^kind: RoleBinding$' "$out/watch-namespaces.yaml")" -eq 2 ] \
  || fail "watchNamespaces={a,b} should render exactly one RoleBinding per namespace (no Lease RoleBinding)"
if grep -q '^kind: Role$' "$out/watch-namespaces.yaml"; then
  fail "leaderElection.enabled=false still renders the Lease Role"
fi
if grep -Eq "(verbs|resources|apiGroups): \[.*['\"]\*['\"]" "$out/defaults.yaml" "$out/watch-namespaces.yaml"; then
  fail "a rendered RBAC rule uses a wildcard"
fi

# The guard against two active operators must refuse to render.
if helm template chaoslab "$CHART" --kube-version "$KUBE_VERSION" \
  --set replicas=2 --set leaderElection.enabled=false >/dev/null 2>&1; then
  fail "replicas=2 with leaderElection.enabled=false should be refused"
fi

step "OK"

#!/usr/bin/env bash
# The main job, end to end on this machine: a local Kubernetes (hack/cluster, in its own network
# namespace), chaoslab's CRDs, the demo target (3 nginx pods on kwok nodes, a PDB), the operator,
# and examples/podkill.yaml — then the verdict and the per-pod recovery it measured.
# Everything it starts is stopped by PID at the end, whatever happens.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CHAOSLAB_NETNS=${CHAOSLAB_NETNS:-chaoslab-demo} CHAOSLAB_CLUSTER_DIR=${CHAOSLAB_CLUSTER_DIR:-/tmp/chaoslab-demo}
CLUSTER="bash $ROOT/hack/cluster"
say() { printf '\n== %s\n' "$*"; }

cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" --bin chaoslab
operator_pid=""
cleanup() {
  [ -n "$operator_pid" ] && { kill "$operator_pid" 2>/dev/null; wait "$operator_pid" 2>/dev/null; } || true
  $CLUSTER down >/dev/null 2>&1 || true
}
trap cleanup EXIT
say "starting a local Kubernetes (API server, scheduler, controllers, kwok nodes, metrics-server)"
$CLUSTER up
eval "$($CLUSTER env)"
kc() { $CLUSTER exec -- "$CHAOSLAB_K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

say "installing the CRDs and the demo target (namespace chaoslab-demo, opted in)"
kc apply -f "$ROOT/crds/"
kc wait --for=condition=Established crd --all --timeout=60s >/dev/null
kc apply -f "$ROOT/examples/demo-target.yaml"
kc -n chaoslab-demo rollout status deploy/web --timeout=120s

say "running the operator"
ip netns exec "$CHAOSLAB_NETNS" env KUBECONFIG="$KUBECONFIG" "$ROOT/target/release/chaoslab" operator \
  --leader-election=false --listen-addr 127.0.0.1:18080 >"$CHAOSLAB_CLUSTER_DIR/logs/operator.log" 2>&1 &
operator_pid=$!

say "applying examples/podkill.yaml"
kc apply -f "$ROOT/examples/podkill.yaml"
kc -n chaoslab-demo wait podkill/web-kill-one --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s >/dev/null \
  || { kc -n chaoslab-demo get podkill web-kill-one -o yaml; tail -20 "$CHAOSLAB_CLUSTER_DIR/logs/operator.log"; exit 1; }

say "result"
kc get chaoslab -n chaoslab-demo
kc -n chaoslab-demo get podkill web-kill-one -o \
  'jsonpath={range .status.targets[*]}  killed {.pod} at {.killedAt} -> replaced by {.replacement}, Ready after {.recoverySeconds}s ({.recovery}){"\n"}{end}'
echo "  verdict: $(kc -n chaoslab-demo get podkill web-kill-one -o 'jsonpath={.status.verdict} — {.status.message}')"
say "events"
kc -n chaoslab-demo get events.events.k8s.io --field-selector regarding.name=web-kill-one \
  -o custom-columns=TYPE:.type,REASON:.reason,NOTE:.note --sort-by=.metadata.creationTimestamp

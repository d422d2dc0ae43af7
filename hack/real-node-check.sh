#!/usr/bin/env bash
# The chart on a real node, end to end (make real-node-check): hack/cluster up --real-node, helm
# install of charts/chaoslab with the demo and no other values, then checks that fail loudly:
#   - the operator pod runs on the real node, Ready (its probes answer), holds the leader Lease,
#     and its ServiceAccount may do what it needs (RBAC); kubectl logs and exec reach it (kubelet)
#   - the lab app's three Deployments are Available, their pods on the real node
#   - one real request path: a one-off pod of the chaoslab image runs `chaoslab load` against
#     http://frontend.chaoslab-demo.svc:8080/ (CoreDNS, kube-proxy's ClusterIP, the CNI bridge)
#     and gets only 2xx answers
#   - metrics-server reads the real kubelet (kubectl top), and the frontend's HPA scales it up
#     under load from real CPU usage (HPA=0 skips that)
#   - a PodKill (examples/podkill.yaml aimed at the demo's catalog pods): verdict and recovery
#     (PODKILL=0 skips it)
# then hack/cluster down, whatever happened (KEEP=1 leaves the cluster up).
# Figures (seconds) are printed at the end as `figure: NAME SECONDS`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER="bash $ROOT/hack/cluster"
RELEASE_NS=chaoslab-system
DEMO_NS=chaoslab-demo
VERSION=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$ROOT/charts/chaoslab/Chart.yaml")
FIGURES=()

say() { printf '\n== [%(%H:%M:%S)T] %s\n' -1 "$*"; }
fail() { printf '\nREAL-NODE CHECK FAILED: %s\n' "$*" >&2; exit 1; }
figure() { FIGURES+=("$1 $2"); echo "figure: $1 $2"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -n "${KUBECONFIG:-}" ]; then
    echo "--- state at the failure" >&2
    kc get nodes,pods -A -o wide >&2 2>/dev/null || true
    kc get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -20 >&2 || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "KEEP=1: the cluster stays up ($CLUSTER down to stop it)"; else $CLUSTER down || rc=1; fi
  exit "$rc"
}
trap cleanup EXIT

HELM_BIN=$(bash "$ROOT/hack/tools.sh")/helm
[ -x "$HELM_BIN" ] || fail "no helm from hack/tools.sh"

say "hack/cluster up --real-node"
t=$(now)
$CLUSTER up --real-node || fail "hack/cluster up --real-node failed"
figure up-real-node-to-ready "$(since "$t")"
eval "$($CLUSTER env)"
[ -n "${CHAOSLAB_NODE_NAME:-}" ] || fail "hack/cluster env names no real node"
kc() { $CLUSTER exec -- "$CHAOSLAB_K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }
helm() { $CLUSTER exec -- env KUBECONFIG="$KUBECONFIG" HOME="$CHAOSLAB_CLUSTER_DIR" "$HELM_BIN" "$@"; }
NODE=$CHAOSLAB_NODE_NAME

say "helm install chaoslab charts/chaoslab --set demo.enabled=true --wait"
t=$(now)
helm install chaoslab "$ROOT/charts/chaoslab" -n "$RELEASE_NS" --create-namespace --set demo.enabled=true --wait --timeout 5m \
  || fail "helm install --wait failed"
figure helm-install-wait "$(since "$t")"

say "the operator"
pod=$(kc -n "$RELEASE_NS" get pods -l app.kubernetes.io/name=chaoslab -o 'jsonpath={.items[0].metadata.name}')
[ -n "$pod" ] || fail "no operator pod in $RELEASE_NS"
on=$(kc -n "$RELEASE_NS" get pod "$pod" -o 'jsonpath={.spec.nodeName}')
[ "$on" = "$NODE" ] || fail "the operator pod $pod runs on '$on', not on the real node $NODE"
kc -n "$RELEASE_NS" wait --for=condition=Ready "pod/$pod" --timeout=60s >/dev/null || fail "operator pod $pod not Ready (probes)"
echo "operator pod $pod on $on: Ready (readiness probe /readyz answered)"
holder=""
for _ in $(seq 1 60); do
  holder=$(kc -n "$RELEASE_NS" get lease chaoslab-operator -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null || true)
  [ -z "$holder" ] || break
  sleep 1
done
[ -n "$holder" ] || fail "no holder of the Lease $RELEASE_NS/chaoslab-operator after 60s"
case $holder in *"$pod"*) ;; *) fail "the Lease is held by '$holder', not by the operator pod $pod" ;; esac
echo "leader Lease chaoslab-operator held by $holder"
sa=system:serviceaccount:$RELEASE_NS:chaoslab
for check in "list pods -n $DEMO_NS" "delete pods -n $DEMO_NS" "watch podkills.chaoslab.dev -A" "patch podkills.chaoslab.dev/status -n $DEMO_NS" \
  "create events.events.k8s.io -n $DEMO_NS" "update leases.coordination.k8s.io/chaoslab-operator -n $RELEASE_NS"; do
  # shellcheck disable=SC2086
  [ "$(kc auth can-i --as "$sa" $check)" = yes ] || fail "the operator's ServiceAccount may not: $check"
  echo "RBAC: $sa may $check"
done
kc -n "$RELEASE_NS" logs "$pod" --tail=3 || fail "kubectl logs (apiserver -> kubelet) failed"
kc -n "$RELEASE_NS" exec "$pod" -- /usr/local/bin/chaoslab --version || fail "kubectl exec (apiserver -> kubelet -> containerd) failed"

say "the lab app"
for d in frontend catalog inventory; do
  kc -n "$DEMO_NS" wait --for=condition=Available "deploy/$d" --timeout=120s >/dev/null || fail "deployment $d not Available"
done
kc -n "$DEMO_NS" get deploy,pods -o wide
others=$(kc -n "$DEMO_NS" get pods -o 'jsonpath={range .items[*]}{.spec.nodeName}{"\n"}{end}' | grep -vx "$NODE" || true)
[ -z "$others" ] || fail "demo pods run on other nodes: $others"

say "one request path: a pod of the chaoslab image loads http://frontend.$DEMO_NS.svc:8080/"
kc -n "$DEMO_NS" delete pod load-check --ignore-not-found --wait >/dev/null
t=$(now)
kc -n "$DEMO_NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: load-check, labels: {app: load-check}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: load
    image: chaoslab:$VERSION
    imagePullPolicy: Never
    # 100 requests; one that is not a 200 breaks the threshold and the pod exits 1.
    args: [load, "http://frontend.$DEMO_NS.svc:8080/", --rate, "20", --duration, 5s, --expect-status, "200",
           --threshold, "errorRate < 0.1%", --threads, "1"]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
YAML
kc -n "$DEMO_NS" wait --for=jsonpath='{.status.phase}'=Running pod/load-check --timeout=60s >/dev/null \
  || kc -n "$DEMO_NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/load-check --timeout=1s >/dev/null \
  || fail "the load pod did not start"
figure pod-apply-to-running "$(since "$t")"
phase=""
for _ in $(seq 1 120); do
  phase=$(kc -n "$DEMO_NS" get pod load-check -o 'jsonpath={.status.phase}')
  case $phase in Succeeded|Failed) break ;; esac
  sleep 0.5
done
kc -n "$DEMO_NS" logs load-check || fail "no logs of the load pod"
[ "$phase" = Succeeded ] || fail "the load pod ended $phase (exit $(kc -n "$DEMO_NS" get pod load-check -o 'jsonpath={.status.containerStatuses[0].state.terminated.exitCode}'))"
echo "load pod Succeeded: every answer 2xx"

say "metrics-server reads the real kubelet"
for _ in $(seq 1 90); do kc top node "$NODE" >/dev/null 2>&1 && break; sleep 1; done
kc top node "$NODE" || fail "no node metrics for $NODE after 90s"
for _ in $(seq 1 60); do kc -n "$DEMO_NS" top pods >/dev/null 2>&1 && break; sleep 1; done
kc -n "$DEMO_NS" top pods || fail "no pod metrics in $DEMO_NS after 60s"
kc -n "$DEMO_NS" get hpa

if [ "${HPA:-1}" = 1 ]; then
  say "the HPA on real CPU: 80 requests/s on the frontend (1 replica, 100m CPU requested, target 60%)"
  kc -n "$DEMO_NS" delete pod load-hpa --ignore-not-found --wait >/dev/null
  t=$(now)
  kc -n "$DEMO_NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: load-hpa}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: load
    image: chaoslab:$VERSION
    imagePullPolicy: Never
    args: [load, "http://frontend.$DEMO_NS.svc:8080/", --rate, "80", --duration, 60s, --threads, "1", -q]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
YAML
  desired=1
  for _ in $(seq 1 90); do
    desired=$(kc -n "$DEMO_NS" get hpa frontend -o 'jsonpath={.status.desiredReplicas}')
    [ "${desired:-1}" -lt 2 ] || break
    sleep 1
  done
  kc -n "$DEMO_NS" get hpa frontend
  [ "${desired:-1}" -ge 2 ] || fail "the HPA did not scale the frontend up under load within 90s"
  figure hpa-scale-up-after-load-start "$(since "$t")"
  kc -n "$DEMO_NS" delete pod load-hpa --wait=false >/dev/null
fi

if [ "${PODKILL:-1}" = 1 ]; then
  say "a PodKill: examples/podkill.yaml aimed at catalog (the demo has no app=web)"
  sed -e 's/app: web/app: catalog/' -e 's/name: web-kill-one/name: catalog-kill-one/' "$ROOT/examples/podkill.yaml" | kc apply -f -
  kc -n "$DEMO_NS" wait podkill/catalog-kill-one --for=jsonpath='{.status.phase}'=Succeeded --timeout=120s >/dev/null \
    || { kc -n "$DEMO_NS" get podkill catalog-kill-one -o yaml; fail "the PodKill did not succeed"; }
  kc -n "$DEMO_NS" get podkill catalog-kill-one -o \
    'jsonpath={range .status.targets[*]}killed {.pod} -> replaced by {.replacement}, Ready after {.recoverySeconds}s{"\n"}{end}'
  verdict=$(kc -n "$DEMO_NS" get podkill catalog-kill-one -o 'jsonpath={.status.verdict}')
  echo "verdict: $verdict — $(kc -n "$DEMO_NS" get podkill catalog-kill-one -o 'jsonpath={.status.message}')"
  figure podkill-recovery "$(kc -n "$DEMO_NS" get podkill catalog-kill-one -o 'jsonpath={.status.targets[0].recoverySeconds}')"
  [ "$verdict" = Pass ] || fail "PodKill verdict $verdict"
fi

say "real-node check passed"
printf '  %s s\n' "${FIGURES[@]}"

#!/usr/bin/env bash
# Scale benchmark of the operator on the local cluster: 5 000 pods on kwok nodes in watched
# namespaces; the operator's RSS and the time from `kubectl apply` of a PodKill to its first kill.
#
#   bench/podkill-scale.sh [RUNS] [PODS]      defaults: 50 runs, 5000 pods
#
# Results go to bench/results/podkill-scale-<UTC date>.txt and to stdout. The cluster runs in its
# own network namespace (chaoslab-bench) and is stopped at the end, whatever happens.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${1:-50}
PODS=${2:-5000}
NAMESPACES=10
PER_NS=$((PODS / NAMESPACES))
export CHAOSLAB_NETNS=chaoslab-bench CHAOSLAB_CLUSTER_DIR=/tmp/chaoslab-bench
export CHAOSLAB_FAKE_NODES=$(((PODS + 99) / 100))   # kwok nodes allow 110 pods each
CLUSTER="bash $ROOT/hack/cluster"
OUT=$ROOT/bench/results/podkill-scale-$(date -u +%Y%m%dT%H%M%SZ).txt
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" --bin chaoslab >&2
OPERATOR_BIN=$ROOT/target/release/chaoslab
operator_pid=""
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null && wait "$operator_pid" 2>/dev/null || true
  $CLUSTER down || true
}
trap cleanup EXIT
$CLUSTER up
eval "$($CLUSTER env)"
kc() { $CLUSTER exec -- "$CHAOSLAB_K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG" "$@"; }

kc apply -f "$ROOT/crds/" >/dev/null
watched=""
for i in $(seq 0 $((NAMESPACES - 1))); do
  ns=bench-$i; watched+="${watched:+,}$ns"
  kc create namespace "$ns" >/dev/null
  kc label namespace "$ns" chaoslab.dev/chaos=enabled >/dev/null
  kc -n "$ns" create deployment web --image=nginx:1.27 --replicas="$PER_NS" >/dev/null
done
log "waiting for $PODS pods on $CHAOSLAB_FAKE_NODES kwok nodes"
start=$SECONDS
for i in $(seq 0 $((NAMESPACES - 1))); do kc -n "bench-$i" rollout status deploy/web --timeout=600s >/dev/null; done
running=$(kc get pods -A -l app=web --field-selector=status.phase=Running --no-headers | wc -l)
log "$running pods Running after $((SECONDS - start))s"

# `ip netns exec` and `env` both exec, so $! is the operator itself (for its RSS).
ip netns exec "$CHAOSLAB_NETNS" env KUBECONFIG="$KUBECONFIG" "$OPERATOR_BIN" operator --leader-election=false \
  --listen-addr 127.0.0.1:18080 --watch-namespaces "$watched" --log-level warn \
  >"$CHAOSLAB_CLUSTER_DIR/logs/bench-operator.log" 2>&1 &
operator_pid=$!
sleep 3   # let the watches list what they watch before the first measurement
rss() { awk '/VmRSS/ {print $2}' "/proc/$operator_pid/status"; }
rss_idle=$(rss)
log "operator pid $operator_pid, RSS ${rss_idle} KiB with $running pods watched"

latencies=()
rss_max=$rss_idle
for run in $(seq 1 "$RUNS"); do
  ns=bench-$((run % NAMESPACES)); name=kill-$run
  t0=$(date +%s.%N)
  printf 'apiVersion: chaoslab.dev/v1alpha1\nkind: PodKill\nmetadata: {name: %s, namespace: %s}\nspec:\n  selector: {matchLabels: {app: web}}\n  recoveryDeadline: 60s\n' "$name" "$ns" \
    | kc apply -f - >/dev/null
  killed=""
  for _ in $(seq 1 200); do
    killed=$(kc -n "$ns" get podkill "$name" -o 'jsonpath={.status.targets[0].killedAt}' 2>/dev/null || true)
    [ -n "$killed" ] && break
    sleep 0.05
  done
  [ -n "$killed" ] || { log "run $run: no kill within 10s"; tail -20 "$CHAOSLAB_CLUSTER_DIR/logs/bench-operator.log" >&2; exit 1; }
  t1=$(date -d "$killed" +%s.%N)
  latencies+=("$(echo "$t1 - $t0" | bc -l)")
  r=$(rss); [ "$r" -gt "$rss_max" ] && rss_max=$r
  kc -n "$ns" delete podkill "$name" --wait=false >/dev/null
done
rss_end=$(rss)

summary=$(printf '%s\n' "${latencies[@]}" | sort -n | awk -v runs="$RUNS" '
  { v[NR] = $1 * 1000 }
  END {
    p50 = v[int((NR + 1) * 0.50)]; p90 = v[int(NR * 0.90 + 0.5)]; p99 = v[int(NR * 0.99 + 0.5)]
    if (p99 == "") p99 = v[NR]
    printf "apply-to-first-kill over %d runs: min %.0f ms, p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms\n", NR, v[1], p50, p90, p99, v[NR]
  }')
{
  echo "# bench/podkill-scale.sh $RUNS $PODS — $(date -u +%FT%TZ), $(nproc) cores, chaoslab $(git -C "$ROOT" rev-parse --short HEAD)"
  echo "pods Running: $running on $CHAOSLAB_FAKE_NODES kwok nodes in $NAMESPACES watched namespaces"
  echo "$summary"
  echo "operator RSS: idle $((rss_idle / 1024)) MiB, max during runs $((rss_max / 1024)) MiB, end $((rss_end / 1024)) MiB"
  echo "latencies (s): ${latencies[*]}"
} | tee "$OUT"

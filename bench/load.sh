#!/usr/bin/env bash
# Benchmarks of the load engine (`chaoslab load`) on loopback, side by side in one run with wrk
# (Debian) and oha (crates.io) against the same local servers:
#
#   throughput  maximum requests/s on 1 and 2 connections (closed loop, no pause) against nginx,
#               client pinned to one core: req/s and req/s per client CPU-second, ratio to wrk
#   accuracy    open model at 1 k, 10 k and 20 k req/s against nginx: achieved/target, drops, lag
#   co          coordinated omission: a server that stalls 1 s of every 10 s
#               (bench/servers/stall_server.rs) at ~1 000 req/s, open model vs closed loops
#   memory      `chaoslab load --rate 10000` against nginx: the client's max RSS
#
#   bash bench/load.sh [SECTION...]      default: all four, 500 s of runs (8.5 min, warm build)
#
# Environment: RUNS (3) runs of each throughput and accuracy case, interleaving the tools so
# noise hits all alike; SECS (10) seconds per throughput and accuracy run; CO_SECS (20);
# MEM_SECS (30); TOOLS ("chaoslab wrk oha") to leave a client out. The section `tools` only
# installs and builds. docs/performance.md explains the figures.
#
# The client runs on core 0 and the server on core 1 (taskset), so "per core" means the client's
# one core. nginx runs with its own config (bench/servers/nginx.conf) from a temporary directory,
# in the foreground, and is stopped by its PID. Missing tools are installed by this script: wrk,
# nginx-light, jq, time, iproute2 (ss) and bc from Debian (apt-get, as root, like hack/deps.sh),
# oha from crates.io at a pinned version into ~/.cache/chaoslab. Raw outputs go to
# bench/results/load-<UTC date>/, the summary also to stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
SECS=${SECS:-10}
CO_SECS=${CO_SECS:-20}
MEM_SECS=${MEM_SECS:-30}
TOOLS=${TOOLS:-chaoslab wrk oha}
OHA_VERSION=1.16.0
CACHE=${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}
CLIENT_CPU=0
SERVER_CPU=1
NGINX_PORT=18181
STALL_PORT=18182
SECTIONS=("$@")
[ ${#SECTIONS[@]} -gt 0 ] || SECTIONS=(throughput accuracy co memory)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
want() { [[ " $TOOLS " == *" $1 "* ]]; }

for s in "${SECTIONS[@]}"; do
  case $s in throughput | accuracy | co | memory | tools) ;; *) fail "unknown section '$s' (throughput, accuracy, co, memory, tools)" ;; esac
done
[ "$(nproc)" -ge 2 ] || fail "needs 2 cores (client on core $CLIENT_CPU, server on core $SERVER_CPU); this machine has $(nproc)"

# --- tools -------------------------------------------------------------------------------------

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || fail "Debian packages missing: ${missing[*]}; installing them needs root (apt-get install ${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]} failed"
}

apt_install wrk nginx-light jq time util-linux curl procps bc iproute2
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fail "nginx is not installed at $NGINX"
command -v wrk >/dev/null || fail "wrk is not on PATH"

OHA=$CACHE/oha-$OHA_VERSION/bin/oha
if want oha && [ ! -x "$OHA" ]; then
  command -v cargo >/dev/null || fail "cargo is needed to build oha $OHA_VERSION"
  log "building oha $OHA_VERSION from crates.io (cold cache; a few minutes)"
  cargo install oha --version "$OHA_VERSION" --locked --root "$CACHE/oha-$OHA_VERSION" >&2 ||
    fail "cargo install oha $OHA_VERSION failed"
fi

# CHAOSLAB_BIN and STALL_SERVER_BIN, when both set, benchmark those builds instead.
CHAOSLAB=${CHAOSLAB_BIN:-$ROOT/target/release/chaoslab}
STALL_SERVER=${STALL_SERVER_BIN:-$ROOT/target/release/examples/stall-server}
if [ -z "${CHAOSLAB_BIN:-}" ] || [ -z "${STALL_SERVER_BIN:-}" ]; then
  log "building chaoslab and the stall server (release)"
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" --bin chaoslab --example stall-server >&2 ||
    fail "cargo build failed"
fi
[ -x "$STALL_SERVER" ] || fail "no stall server at $STALL_SERVER"
! want chaoslab || [ -x "$CHAOSLAB" ] || fail "no chaoslab at $CHAOSLAB"

pkg_version() { dpkg-query -W -f='${Version}' "$1"; }
VERSIONS="chaoslab $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+changes'), wrk $(pkg_version wrk) (Debian), nginx $(pkg_version nginx-light) (Debian nginx-light), oha $("$OHA" --version 2>/dev/null | awk '{print $2}') (crates.io), $(rustc --version | awk '{print $1, $2}')"
log "$VERSIONS"
[[ " ${SECTIONS[*]} " == *" tools "* ]] && exit 0

OUT=$ROOT/bench/results/load-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/chaoslab-bench-load.XXXXXX)
SUMMARY=$OUT/summary.txt
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# --- servers -----------------------------------------------------------------------------------

server_pids=()
client_pid=""
sampler_pid=""
cleanup() {
  local pid
  [ -n "$sampler_pid" ] && { kill "$sampler_pid" 2>/dev/null || true; }
  # A client still running (the script was interrupted): /usr/bin/time's child, then time.
  if [ -n "$client_pid" ]; then
    pkill -TERM -P "$client_pid" 2>/dev/null || true
    kill "$client_pid" 2>/dev/null && wait "$client_pid" 2>/dev/null || true
  fi
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_ready() { # URL NAME PID
  local _
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || fail "$2 exited at start-up (see $OUT/$2.log)"
    sleep 0.05
  done
  fail "$2 did not answer $1 within 5 s (see $OUT/$2.log)"
}

NGINX_URL=http://127.0.0.1:$NGINX_PORT/
nginx_pid=""
nginx_worker=""
start_nginx() {
  port_free "$NGINX_PORT" || fail "port $NGINX_PORT is taken: something else listens there"
  mkdir -p "$TMP/nginx"
  sed -e "s|@PORT@|$NGINX_PORT|" -e "s|@DIR@|$TMP/nginx|g" "$ROOT/bench/servers/nginx.conf" >"$TMP/nginx/nginx.conf"
  # `daemon off`: taskset execs nginx, so $! is nginx's master, stopped by that PID at the end.
  taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$OUT/nginx.log" 2>&1 &
  nginx_pid=$!
  server_pids+=("$nginx_pid")
  wait_ready "$NGINX_URL" nginx "$nginx_pid"
  nginx_worker=$(pgrep -P "$nginx_pid" | head -1)
  [ -n "$nginx_worker" ] || fail "nginx has no worker process"
  log "nginx master $nginx_pid, worker $nginx_worker on core $SERVER_CPU, $NGINX_URL"
}

STALL_URL=http://127.0.0.1:$STALL_PORT/
stall_pid=""
start_stall_server() {
  port_free "$STALL_PORT" || fail "port $STALL_PORT is taken: something else listens there"
  taskset -c "$SERVER_CPU" "$STALL_SERVER" --port "$STALL_PORT" --period-ms 10000 --stall-ms 1000 \
    >"$OUT/stall-server.log" 2>&1 &
  stall_pid=$!
  server_pids+=("$stall_pid")
  # The stall schedule counts from its start: wait for the first answer, which is within the
  # first 9 s, so every measurement below starts at a known phase plus the set-up time.
  wait_ready "$STALL_URL" stall-server "$stall_pid"
  log "stall server $stall_pid on core $SERVER_CPU, $STALL_URL (1 s of every 10 s)"
}

# CPU ticks (utime + stime) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
CLK_TCK=$(getconf CLK_TCK)

# --- one client run ----------------------------------------------------------------------------

# wrk's done() hook prints its figures as one JSON line; with no request()/response() hook wrk
# keeps its fast path (static request, no Lua per request). wrk 4 hands done() the histogram it
# prints, after its own coordinated-omission correction (stats_correct in wrk.c).
cat >"$TMP/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
EOF

# run_client NAME SERVER_PID CMD...: runs CMD on the client core under /usr/bin/time, keeping
# NAME.out, NAME.err and NAME.time in $OUT; sets CPU (client user+sys seconds, also USER_S and
# SYS_S), RSS_KIB, SERVER_CPU_S (CPU seconds the server process used meanwhile) and
# MAX_CONNS (the most connections the client had open to the server, sampled every 0.5 s).
run_client() {
  local name=$1 spid=$2 t0 t1 rc=0 port
  shift 2
  port=$NGINX_PORT
  [ "$spid" = "$stall_pid" ] && port=$STALL_PORT
  t0=$(ticks "$spid")
  taskset -c "$CLIENT_CPU" /usr/bin/time -f '%e %U %S %M' -o "$OUT/$name.time" "$@" \
    >"$OUT/$name.out" 2>"$OUT/$name.err" &
  client_pid=$!
  # The client's open connections to the server, counted twice a second (ss, netlink: cheap).
  while kill -0 "$client_pid" 2>/dev/null; do
    ss -Htn state established "( dport = :$port )" | wc -l
    sleep 0.5
  done >"$OUT/$name.conns" &
  sampler_pid=$!
  wait "$client_pid" || rc=$?
  client_pid=""
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  MAX_CONNS=$(sort -n "$OUT/$name.conns" | tail -1)
  rm -f "$OUT/$name.conns"
  t1=$(ticks "$spid")
  if [ "$rc" -ne 0 ]; then
    log "$name: '$*' exited $rc; its stderr:"
    tail -20 "$OUT/$name.err" >&2
    fail "$name failed"
  fi
  read -r _ USER_S SYS_S RSS_KIB <"$OUT/$name.time"
  CPU=$(echo "$USER_S + $SYS_S" | bc -l)
  SERVER_CPU_S=$(echo "($t1 - $t0) / $CLK_TCK" | bc -l)
}

# Each parser prints: requests seconds p50_ms p99_ms p999_ms max_ms errors [dropped lag_mean_ms
# lag_max_ms]
parse_wrk() {
  grep '^WRKJSON ' "$1" | cut -d' ' -f2- |
    jq -r '[.requests, .duration_us / 1e6, .p50_us / 1e3, .p99_us / 1e3, .p999_us / 1e3, .max_us / 1e3, .errors] | @tsv'
}
parse_oha() { # answered requests (any status); errors leave out the one request cut at the deadline
  jq -r '[([.statusCodeDistribution[]] | add // 0), .summary.total,
          .latencyPercentiles.p50 * 1e3, .latencyPercentiles.p99 * 1e3, .latencyPercentiles["p99.9"] * 1e3,
          .summary.slowest * 1e3,
          ([.errorDistribution | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0)] | @tsv' "$1"
}
parse_chaoslab() { # requests sent over the seconds load was sent (run.seconds, as the CLI's rates)
  jq -r '[.requests.total, .run.seconds, .latency.p50Ms, .latency.p99Ms, .latency.p999Ms, .latency.maxMs,
          (.requests.total - .requests.ok), .requests.dropped, .schedulerLag.meanMs, .schedulerLag.maxMs] | @tsv' "$1"
}

RESULTS=$OUT/results.tsv
printf 'section\ttool\tcase\trun\trequests\tseconds\treq_per_s\tclient_cpu_s\treq_per_cpu_s\tserver_cpu_s\trss_kib\tp50_ms\tp99_ms\tp999_ms\tmax_ms\terrors\tclient_user_s\tclient_sys_s\tuser_us_per_req\tsys_us_per_req\tmax_conns\tdropped\tlag_mean_ms\tlag_max_ms\n' >"$RESULTS"
# record SECTION TOOL CASE RUN PARSED-LINE: one line of results.tsv from the last run_client
record() {
  local requests seconds p50 p99 p999 max errors rps per_cpu dropped lag_mean lag_max
  read -r requests seconds p50 p99 p999 max errors dropped lag_mean lag_max <<<"$5"
  rps=$(echo "$requests / $seconds" | bc -l)
  per_cpu=$(echo "if ($CPU > 0) $requests / $CPU else 0" | bc -l)
  printf '%s\t%s\t%s\t%s\t%d\t%.3f\t%.0f\t%.2f\t%.0f\t%.2f\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%s\t%s\t%s\n' \
    "$1" "$2" "$3" "$4" "$requests" "$seconds" "$rps" "$CPU" "$per_cpu" "$SERVER_CPU_S" "$RSS_KIB" \
    "$p50" "$p99" "$p999" "$max" "$errors" "$USER_S" "$SYS_S" \
    "$(echo "$USER_S * 1000000 / $requests" | bc -l)" "$(echo "$SYS_S * 1000000 / $requests" | bc -l)" \
    "${MAX_CONNS:-0}" "${dropped:-nan}" "${lag_mean:-nan}" "${lag_max:-nan}" >>"$RESULTS"
  log "$1 $2 $3 run $4: $(printf '%.0f' "$rps") req/s, client CPU $(printf '%.2f' "$CPU") s, p99 $(printf '%.3f' "$p99") ms, errors $errors, max connections ${MAX_CONNS:-0}${lag_max:+, scheduler lag mean $lag_mean ms max $lag_max ms, dropped $dropped}"
}

# median SECTION TOOL CASE COLUMN: the median of COLUMN over that case's runs.
median() {
  awk -F'\t' -v s="$1" -v t="$2" -v c="$3" -v col="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) k = i; next }
    $1 == s && $2 == t && $3 == c { print $k }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "-"; else printf "%.2f", a / b }'; }

# --- sections ----------------------------------------------------------------------------------

throughput() {
  log "throughput: $RUNS × ${SECS}s per tool and connection count, tools interleaved"
  local run c tool
  for run in $(seq 1 "$RUNS"); do
    for c in 1 2; do
      for tool in wrk oha chaoslab; do
        want "$tool" || continue
        local name=throughput-$tool-c$c-r$run
        case $tool in
          wrk)
            run_client "$name" "$nginx_worker" wrk -t"$c" -c"$c" -d"${SECS}s" -s "$TMP/report.lua" "$NGINX_URL"
            record throughput wrk "c$c" "$run" "$(parse_wrk "$OUT/$name.out")" ;;
          oha)
            run_client "$name" "$nginx_worker" "$OHA" -c "$c" -z "${SECS}s" --no-tui --output-format json "$NGINX_URL"
            record throughput oha "c$c" "$run" "$(parse_oha "$OUT/$name.out")" ;;
          chaoslab)
            run_client "$name" "$nginx_worker" "$CHAOSLAB" load "$NGINX_URL" --vus "$c" --threads "$c" \
              --duration "${SECS}s" -o json
            record throughput chaoslab "c$c" "$run" "$(parse_chaoslab "$OUT/$name.out")" ;;
        esac
      done
    done
  done
  say ""
  say "## throughput: closed loop, no pause, against nginx (1 worker on core $SERVER_CPU), client on core $CLIENT_CPU; medians of $RUNS × ${SECS}s"
  say "| connections | tool | req/s | ×wrk | req/s, each run | client busy (CPU s/s) | client CPU µs/req, user + sys | req per client CPU-s | ×wrk | nginx busy (CPU s/s) | p99 ms |"
  say "|---|---|---|---|---|---|---|---|---|---|---|"
  for c in 1 2; do
    local wrk_rps wrk_cpu
    wrk_rps=$(median throughput wrk "c$c" req_per_s)
    wrk_cpu=$(median throughput wrk "c$c" req_per_cpu_s)
    for tool in wrk oha chaoslab; do
      want "$tool" || continue
      local rps per_cpu ccpu scpu p99 us sy runs
      rps=$(median throughput "$tool" "c$c" req_per_s)
      runs=$(awk -F'\t' -v t="$tool" -v c="c$c" '$1 == "throughput" && $2 == t && $3 == c { printf "%s%s", sep, $7; sep = ", " }' "$RESULTS")
      us=$(median throughput "$tool" "c$c" user_us_per_req)
      sy=$(median throughput "$tool" "c$c" sys_us_per_req)
      per_cpu=$(median throughput "$tool" "c$c" req_per_cpu_s)
      ccpu=$(median throughput "$tool" "c$c" client_cpu_s)
      scpu=$(median throughput "$tool" "c$c" server_cpu_s)
      p99=$(median throughput "$tool" "c$c" p99_ms)
      say "| $c | $tool | $(printf '%.0f' "$rps") | $(ratio "$rps" "$wrk_rps") | $runs | $(awk -v a="$ccpu" -v s="$SECS" 'BEGIN{printf "%.2f", a / s}') | $(printf '%.1f + %.1f' "$us" "$sy") | $(printf '%.0f' "$per_cpu") | $(ratio "$per_cpu" "$wrk_cpu") | $(awk -v a="$scpu" -v s="$SECS" 'BEGIN{printf "%.2f", a / s}') | $(printf '%.3f' "$p99") |"
    done
  done
}

accuracy() {
  log "accuracy: $RUNS × ${SECS}s at 1000, 10000 and 20000 req/s, tools interleaved"
  local run rate tool name
  for run in $(seq 1 "$RUNS"); do
    for rate in 1000 10000 20000; do
      if want chaoslab; then
        name=accuracy-chaoslab-r$rate-run$run
        run_client "$name" "$nginx_worker" "$CHAOSLAB" load "$NGINX_URL" --rate "$rate" --duration "${SECS}s" -o json
        record accuracy chaoslab "$rate" "$run" "$(parse_chaoslab "$OUT/$name.out")"
      fi
      if want oha; then
        # oha's rate mode for comparison: 100 workers, each a closed loop, taking send tokens
        # from one pacer; --latency-correction counts latency from the token's time.
        name=accuracy-oha-r$rate-run$run
        run_client "$name" "$nginx_worker" "$OHA" -c 100 -q "$rate" --latency-correction -z "${SECS}s" --no-tui \
          --output-format json "$NGINX_URL"
        record accuracy oha "$rate" "$run" "$(parse_oha "$OUT/$name.out")"
      fi
    done
  done
  say ""
  say "## rate accuracy against nginx, client on core $CLIENT_CPU; medians of $RUNS × ${SECS}s"
  say "| target req/s | tool | achieved req/s | achieved/target | dropped | scheduler lag mean / max ms | client CPU s/s | max connections | p50 ms | p99 ms | p99 ms, each run |"
  say "|---|---|---|---|---|---|---|---|---|---|---|"
  for rate in 1000 10000 20000; do
    for tool in chaoslab oha; do
      want "$tool" || continue
      local rps ccpu p50 p99 conns dropped lmean lmax runs
      rps=$(median accuracy "$tool" "$rate" req_per_s)
      ccpu=$(median accuracy "$tool" "$rate" client_cpu_s)
      p50=$(median accuracy "$tool" "$rate" p50_ms)
      p99=$(median accuracy "$tool" "$rate" p99_ms)
      conns=$(median accuracy "$tool" "$rate" max_conns)
      dropped=$(median accuracy "$tool" "$rate" dropped)
      lmean=$(median accuracy "$tool" "$rate" lag_mean_ms)
      lmax=$(median accuracy "$tool" "$rate" lag_max_ms)
      runs=$(awk -F'\t' -v t="$tool" -v r="$rate" '$1 == "accuracy" && $2 == t && $3 == r { printf "%s%.1f", sep, $13; sep = ", " }' "$RESULTS")
      [ "$tool" = oha ] && { dropped="-"; lmean="-"; lmax="-"; }
      say "| $rate | $tool | $(printf '%.0f' "$rps") | $(awk -v a="$rps" -v r="$rate" 'BEGIN{printf "%.4f", a / r}') | $dropped | $lmean / $lmax | $(awk -v a="$ccpu" -v s="$SECS" 'BEGIN{printf "%.2f", a / s}') | $conns | $(printf '%.3f' "$p50") | $(printf '%.3f' "$p99") | $runs |"
    done
  done
}

co() {
  log "coordinated omission: ${CO_SECS}s per client against the stall server"
  local rate=1000 name
  if want chaoslab; then
    name=co-chaoslab-open
    run_client "$name" "$stall_pid" "$CHAOSLAB" load "$STALL_URL" --rate "$rate" --duration "${CO_SECS}s" -o json
    record co chaoslab "open --rate $rate" 1 "$(parse_chaoslab "$OUT/$name.out")"
    name=co-chaoslab-closed
    run_client "$name" "$stall_pid" "$CHAOSLAB" load "$STALL_URL" --vus 4 --think-time 3ms --duration "${CO_SECS}s" -o json
    record co chaoslab "closed --vus 4 --think-time 3ms" 1 "$(parse_chaoslab "$OUT/$name.out")"
  fi
  if want wrk; then
    name=co-wrk
    run_client "$name" "$stall_pid" wrk -t1 -c1 -d"${CO_SECS}s" -s "$TMP/report.lua" "$STALL_URL"
    record co wrk "closed -c1, no pacing" 1 "$(parse_wrk "$OUT/$name.out")"
  fi
  if want oha; then
    name=co-oha-closed
    run_client "$name" "$stall_pid" "$OHA" -c 1 -q "$rate" -z "${CO_SECS}s" --no-tui --output-format json "$STALL_URL"
    record co oha "closed -c1 -q $rate" 1 "$(parse_oha "$OUT/$name.out")"
    name=co-oha-corrected
    run_client "$name" "$stall_pid" "$OHA" -c 1 -q "$rate" --latency-correction -z "${CO_SECS}s" --no-tui --output-format json "$STALL_URL"
    record co oha "closed -c1 -q $rate --latency-correction" 1 "$(parse_oha "$OUT/$name.out")"
  fi
  say ""
  say "## coordinated omission: server stalls 1 s of every 10 s, ${CO_SECS}s per client, ~$rate req/s"
  say "| tool | model | mean req/s | p50 ms | p99 ms | p99.9 ms | max ms |"
  say "|---|---|---|---|---|---|---|"
  awk -F'\t' 'NR > 1 && $1 == "co" { printf "| %s | %s | %.0f | %.3f | %.1f | %.1f | %.1f |\n", $2, $3, $7, $12, $13, $14, $15 }' "$RESULTS" |
    tee -a "$SUMMARY"
}

memory() {
  want chaoslab || { log "memory: skipped (chaoslab not in TOOLS)"; return; }
  local rate=10000 name=memory-chaoslab
  log "memory: chaoslab at $rate req/s for ${MEM_SECS}s"
  run_client "$name" "$nginx_worker" "$CHAOSLAB" load "$NGINX_URL" --rate "$rate" --duration "${MEM_SECS}s" -o json
  record memory chaoslab "open --rate $rate" 1 "$(parse_chaoslab "$OUT/$name.out")"
  say ""
  say "## memory: chaoslab load --rate $rate --duration ${MEM_SECS}s against nginx"
  say "| target req/s | achieved req/s | dropped | max RSS MiB | client CPU s/s | max connections | p99 ms |"
  say "|---|---|---|---|---|---|---|"
  awk -F'\t' -v s="$MEM_SECS" -v r="$rate" 'NR > 1 && $1 == "memory" { printf "| %d | %.0f | %s | %.1f | %.2f | %d | %.3f |\n", r, $7, $22, $11 / 1024, $8 / s, $21, $13 }' "$RESULTS" |
    tee -a "$SUMMARY"
}

# --- main --------------------------------------------------------------------------------------

started=$SECONDS
say "# bash bench/load.sh ${SECTIONS[*]} — $(date -u +%FT%TZ), $(nproc) cores (shared), $(uname -r)"
say "# $VERSIONS"
say "# client on core $CLIENT_CPU, server on core $SERVER_CPU (taskset); RUNS=$RUNS SECS=$SECS CO_SECS=$CO_SECS MEM_SECS=$MEM_SECS"
needs_nginx=0
for s in "${SECTIONS[@]}"; do [ "$s" = co ] || needs_nginx=1; done
[ "$needs_nginx" -eq 1 ] && start_nginx
[[ " ${SECTIONS[*]} " == *" co "* ]] && start_stall_server
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for s in "${SECTIONS[@]}"; do "$s"; done
say ""
say "# load average (1, 5, 15 min) before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) (this benchmark alone adds about 1)"
say "# took $((SECONDS - started)) s; raw outputs in ${OUT#"$ROOT"/}/"
find "$OUT" -name '*.err' -empty -delete

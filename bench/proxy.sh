#!/usr/bin/env bash
# Benchmark of the fault-injecting proxy (`chaoslab proxy`) on loopback: what it costs a request
# when no fault is configured, side by side in one run with the same client against the same
# nginx:
#
#   direct          client → nginx
#   chaoslab-http   client → chaoslab proxy, http mode (L7: HTTP parsed, faults per request) → nginx
#   chaoslab-tcp    client → chaoslab proxy, tcp mode (L4: bytes copied) → nginx
#   toxiproxy       client → Toxiproxy (L4), one proxy and no toxic → nginx
#
# For each path, RUNS (3) times, the paths interleaved so noise hits all alike:
#
#   latency     open model at RATE (1000) req/s for SECS (10) s, oha on 8 keep-alive connections
#               (--latency-correction: latency from each request's intended start): p50, p99;
#               "added" is the path's median minus the direct path's median
#   throughput  closed loop, CONNS (50) keep-alive connections, no pause, wrk (1 thread) for
#               SECS s: req/s, and the proxy's CPU seconds per 1000 requests
#
#   bash bench/proxy.sh            # about 5 minutes with a warm build and Toxiproxy cached
#
# Goals (issue 5): added p50 ≤ 50 µs, added p99 ≤ 500 µs, throughput ≥ 2 × Toxiproxy's.
#
# Cores (2): the client runs on core 0; nginx and the proxy under test share core 1 (taskset),
# so the proxy gets one core (tokio and Go both size their thread pools to it). Toxiproxy is
# built once with `go install` at a pinned version into ${CHAOSLAB_CACHE:-~/.cache/chaoslab}/
# bench/; oha is the one bench/load.sh builds (same pinned version and place); nginx and wrk come
# from Debian (installed as bench/load.sh does, as root). chaoslab is built with
# `cargo build --release` (set CHAOSLAB_BIN to use another build). Every process started here
# is stopped by its PID. Raw outputs go to bench/results/proxy-<UTC date>/, the summary also to
# stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
SECS=${SECS:-10}
RATE=${RATE:-1000}
CONNS=${CONNS:-50}
OHA_VERSION=1.16.0
TOXIPROXY_VERSION=v2.12.0
CACHE=${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}
CLIENT_CPU=0
SERVER_CPU=1
NGINX_PORT=18281
HTTP_PORT=18282
TCP_PORT=18283
TOXI_PORT=18284
TOXI_API_PORT=18285
HTTP_ADMIN_PORT=18286
TCP_ADMIN_PORT=18287
PATHS=(direct chaoslab-http chaoslab-tcp toxiproxy)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

[ "$(nproc)" -ge 2 ] || fail "needs 2 cores (client on core $CLIENT_CPU, servers on core $SERVER_CPU); this machine has $(nproc)"

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

apt_install wrk nginx-light jq curl procps bc util-linux
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || fail "nginx is not installed at $NGINX"

OHA=$CACHE/oha-$OHA_VERSION/bin/oha
if [ ! -x "$OHA" ]; then
  command -v cargo >/dev/null || fail "cargo is needed to build oha $OHA_VERSION"
  log "building oha $OHA_VERSION from crates.io (cold cache; a few minutes)"
  cargo install oha --version "$OHA_VERSION" --locked --root "$CACHE/oha-$OHA_VERSION" >&2 ||
    fail "cargo install oha $OHA_VERSION failed"
fi

TOXIPROXY_DIR=$CACHE/bench/toxiproxy-$TOXIPROXY_VERSION
TOXIPROXY=$TOXIPROXY_DIR/server
if [ ! -x "$TOXIPROXY" ]; then
  command -v go >/dev/null || fail "go is needed to build Toxiproxy $TOXIPROXY_VERSION"
  log "building Toxiproxy $TOXIPROXY_VERSION with go install (cold cache)"
  mkdir -p "$TOXIPROXY_DIR"
  GOFLAGS=-mod=mod GOBIN=$TOXIPROXY_DIR go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >&2 ||
    fail "go install toxiproxy $TOXIPROXY_VERSION failed"
fi

CHAOSLAB=${CHAOSLAB_BIN:-$ROOT/target/release/chaoslab}
if [ -z "${CHAOSLAB_BIN:-}" ]; then
  log "building chaoslab (release)"
  cargo build --release --locked --manifest-path "$ROOT/Cargo.toml" --bin chaoslab >&2 || fail "cargo build failed"
fi
[ -x "$CHAOSLAB" ] || fail "no chaoslab at $CHAOSLAB"

VERSIONS="chaoslab $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+changes'), Toxiproxy $TOXIPROXY_VERSION ($(go version 2>/dev/null | awk '{print $3}')), nginx $(dpkg-query -W -f='${Version}' nginx-light), wrk $(dpkg-query -W -f='${Version}' wrk), oha $("$OHA" --version 2>/dev/null | awk '{print $2}'), $(rustc --version | awk '{print $1, $2}')"
log "$VERSIONS"

OUT=$ROOT/bench/results/proxy-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/chaoslab-bench-proxy.XXXXXX)
SUMMARY=$OUT/summary.md
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# --- servers -----------------------------------------------------------------------------------

pids=()
client_pid=""
cleanup() {
  local pid
  if [ -n "$client_pid" ]; then
    kill "$client_pid" 2>/dev/null && wait "$client_pid" 2>/dev/null || true
  fi
  for pid in "${pids[@]}"; do
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
for port in $NGINX_PORT $HTTP_PORT $TCP_PORT $TOXI_PORT $TOXI_API_PORT $HTTP_ADMIN_PORT $TCP_ADMIN_PORT; do
  port_free "$port" || fail "port $port is taken: something else listens there"
done

# nginx with bench/load.sh's configuration (one worker, keep-alive without limits), in the
# foreground so that $! is its master.
mkdir -p "$TMP/nginx"
sed -e "s|@PORT@|$NGINX_PORT|" -e "s|@DIR@|$TMP/nginx|g" "$ROOT/bench/servers/nginx.conf" >"$TMP/nginx/nginx.conf"
taskset -c "$SERVER_CPU" "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" >"$OUT/nginx.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$NGINX_PORT/" nginx "$!"
log "nginx $! on core $SERVER_CPU, port $NGINX_PORT"

taskset -c "$SERVER_CPU" "$CHAOSLAB" proxy --protocol http --route "127.0.0.1:$HTTP_PORT=127.0.0.1:$NGINX_PORT" \
  --admin-addr "127.0.0.1:$HTTP_ADMIN_PORT" --log-level warn >"$OUT/chaoslab-http.log" 2>&1 &
http_pid=$!
pids+=("$http_pid")
wait_ready "http://127.0.0.1:$HTTP_ADMIN_PORT/readyz" chaoslab-http "$http_pid"
taskset -c "$SERVER_CPU" "$CHAOSLAB" proxy --protocol tcp --route "127.0.0.1:$TCP_PORT=127.0.0.1:$NGINX_PORT" \
  --admin-addr "127.0.0.1:$TCP_ADMIN_PORT" --log-level warn >"$OUT/chaoslab-tcp.log" 2>&1 &
tcp_pid=$!
pids+=("$tcp_pid")
wait_ready "http://127.0.0.1:$TCP_ADMIN_PORT/readyz" chaoslab-tcp "$tcp_pid"
LOG_LEVEL=warn taskset -c "$SERVER_CPU" "$TOXIPROXY" -host 127.0.0.1 -port "$TOXI_API_PORT" >"$OUT/toxiproxy.log" 2>&1 &
toxi_pid=$!
pids+=("$toxi_pid")
wait_ready "http://127.0.0.1:$TOXI_API_PORT/version" toxiproxy "$toxi_pid"
curl -fsS -X POST "http://127.0.0.1:$TOXI_API_PORT/proxies" \
  -d "{\"name\":\"bench\",\"listen\":\"127.0.0.1:$TOXI_PORT\",\"upstream\":\"127.0.0.1:$NGINX_PORT\",\"enabled\":true}" \
  >"$OUT/toxiproxy-proxy.json" || fail "creating the Toxiproxy proxy failed"
log "chaoslab http $http_pid, chaoslab tcp $tcp_pid, toxiproxy $toxi_pid, all on core $SERVER_CPU"

url() {
  case $1 in
    direct) echo "http://127.0.0.1:$NGINX_PORT/" ;;
    chaoslab-http) echo "http://127.0.0.1:$HTTP_PORT/" ;;
    chaoslab-tcp) echo "http://127.0.0.1:$TCP_PORT/" ;;
    toxiproxy) echo "http://127.0.0.1:$TOXI_PORT/" ;;
  esac
}
proxy_pid() {
  case $1 in
    chaoslab-http) echo "$http_pid" ;;
    chaoslab-tcp) echo "$tcp_pid" ;;
    toxiproxy) echo "$toxi_pid" ;;
    *) echo "" ;;
  esac
}
for path in "${PATHS[@]}"; do
  [ "$(curl -fsS "$(url "$path")")" = "ok" ] || fail "$path does not reach nginx"
done

ticks() { if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }
CLK_TCK=$(getconf CLK_TCK)

cat >"$TMP/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF

RESULTS=$OUT/results.tsv
printf 'measure\tpath\trun\trequests\tseconds\treq_per_s\tp50_ms\tp99_ms\terrors\tproxy_cpu_s\n' >"$RESULTS"

# run NAME PATH CMD...: the client on its core; records the proxy's CPU seconds meanwhile.
run() {
  local name=$1 path=$2 t0 t1 rc=0 ppid
  shift 2
  ppid=$(proxy_pid "$path")
  t0=$(ticks "$ppid")
  taskset -c "$CLIENT_CPU" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" &
  client_pid=$!
  wait "$client_pid" || rc=$?
  client_pid=""
  t1=$(ticks "$ppid")
  [ "$rc" -eq 0 ] || { tail -20 "$OUT/$name.err" >&2; fail "$name: '$*' exited $rc"; }
  PROXY_CPU=$(echo "($t1 - $t0) / $CLK_TCK" | bc -l)
}

latency() { # PATH RUN
  local name=latency-$1-r$2
  run "$name" "$1" "$OHA" -c 8 -q "$RATE" --latency-correction -z "${SECS}s" --no-tui --output-format json "$(url "$1")"
  jq -r --arg p "$1" --arg r "$2" --arg cpu "$PROXY_CPU" \
    '["latency", $p, $r, ([.statusCodeDistribution[]] | add // 0), .summary.total, .summary.requestsPerSec,
      .latencyPercentiles.p50 * 1e3, .latencyPercentiles.p99 * 1e3,
      ([.errorDistribution | to_entries[] | select(.key != "aborted due to deadline") | .value] | add // 0), ($cpu | tonumber)] | @tsv' \
    "$OUT/$name.out" >>"$RESULTS"
  log "latency $1 run $2: $(tail -1 "$RESULTS" | awk -F'\t' '{printf "p50 %.3f ms, p99 %.3f ms, %d req/s", $7, $8, $6}')"
}

throughput() { # PATH RUN
  local name=throughput-$1-r$2
  run "$name" "$1" wrk -t1 -c"$CONNS" -d"${SECS}s" -s "$TMP/report.lua" "$(url "$1")"
  grep '^WRKJSON ' "$OUT/$name.out" | cut -d' ' -f2- |
    jq -r --arg p "$1" --arg r "$2" --arg cpu "$PROXY_CPU" \
      '["throughput", $p, $r, .requests, .duration_us / 1e6, .requests / (.duration_us / 1e6), .p50_us / 1e3, .p99_us / 1e3, .errors, ($cpu | tonumber)] | @tsv' \
      >>"$RESULTS"
  log "throughput $1 run $2: $(tail -1 "$RESULTS" | awk -F'\t' '{printf "%d req/s, errors %d, proxy CPU %.2f s", $6, $9, $10}')"
}

median() { # MEASURE PATH COLUMN
  awk -F'\t' -v m="$1" -v p="$2" -v col="$3" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) k = i; next }
    $1 == m && $2 == p { print $k }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
each() { # MEASURE PATH COLUMN FORMAT
  awk -F'\t' -v m="$1" -v p="$2" -v col="$3" -v f="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) k = i; next }
    $1 == m && $2 == p { printf "%s" f, sep, $k; sep = ", " }' "$RESULTS"
}

# --- runs --------------------------------------------------------------------------------------

started=$SECONDS
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "warm-up: 2 s per path"
for path in "${PATHS[@]}"; do
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d2s "$(url "$path")" >/dev/null 2>&1 || fail "warm-up of $path failed"
done
for r in $(seq 1 "$RUNS"); do
  for path in "${PATHS[@]}"; do latency "$path" "$r"; done
  for path in "${PATHS[@]}"; do throughput "$path" "$r"; done
done

# --- summary -----------------------------------------------------------------------------------

say "# bash bench/proxy.sh — $(date -u +%FT%TZ), $(nproc) cores (shared), $(uname -r)"
say "# $VERSIONS"
say "# client on core $CLIENT_CPU; nginx (1 worker) and the proxies on core $SERVER_CPU; RUNS=$RUNS SECS=$SECS RATE=$RATE CONNS=$CONNS; medians of $RUNS runs"
say ""
say "## latency at $RATE req/s (open model, oha -c 8 -q $RATE --latency-correction)"
say "| path | p50 ms | p99 ms | added p50 µs | added p99 µs | p50 ms, each run | p99 ms, each run | proxy CPU ms per 1000 req |"
say "|---|---|---|---|---|---|---|---|"
d50=$(median latency direct p50_ms)
d99=$(median latency direct p99_ms)
for path in "${PATHS[@]}"; do
  p50=$(median latency "$path" p50_ms)
  p99=$(median latency "$path" p99_ms)
  cpu=$(median latency "$path" proxy_cpu_s)
  reqs=$(median latency "$path" requests)
  say "| $path | $(printf '%.3f' "$p50") | $(printf '%.3f' "$p99") | $(awk -v a="$p50" -v b="$d50" 'BEGIN{printf "%.0f", (a - b) * 1000}') | $(awk -v a="$p99" -v b="$d99" 'BEGIN{printf "%.0f", (a - b) * 1000}') | $(each latency "$path" p50_ms '%.3f') | $(each latency "$path" p99_ms '%.3f') | $(awk -v c="$cpu" -v n="$reqs" 'BEGIN{ if (n > 0 && c > 0) printf "%.1f", c * 1e6 / n; else print "-" }') |"
done
say ""
say "## maximum throughput (closed loop, wrk -t1 -c$CONNS, ${SECS}s)"
say "| path | req/s | × direct | × toxiproxy | req/s, each run | p50 ms | p99 ms | errors | proxy CPU µs per request |"
say "|---|---|---|---|---|---|---|---|---|"
direct_rps=$(median throughput direct req_per_s)
toxi_rps=$(median throughput toxiproxy req_per_s)
for path in "${PATHS[@]}"; do
  rps=$(median throughput "$path" req_per_s)
  cpu=$(median throughput "$path" proxy_cpu_s)
  reqs=$(median throughput "$path" requests)
  say "| $path | $(printf '%.0f' "$rps") | $(awk -v a="$rps" -v b="$direct_rps" 'BEGIN{printf "%.2f", a / b}') | $(awk -v a="$rps" -v b="$toxi_rps" 'BEGIN{printf "%.2f", a / b}') | $(each throughput "$path" req_per_s '%.0f') | $(printf '%.3f' "$(median throughput "$path" p50_ms)") | $(printf '%.3f' "$(median throughput "$path" p99_ms)") | $(median throughput "$path" errors) | $(awk -v c="$cpu" -v n="$reqs" 'BEGIN{ if (n > 0 && c > 0) printf "%.1f", c * 1e6 / n; else print "-" }') |"
done
say ""
h50=$(awk -v a="$(median latency chaoslab-http p50_ms)" -v b="$d50" 'BEGIN{printf "%.0f", (a - b) * 1000}')
h99=$(awk -v a="$(median latency chaoslab-http p99_ms)" -v b="$d99" 'BEGIN{printf "%.0f", (a - b) * 1000}')
hx=$(awk -v a="$(median throughput chaoslab-http req_per_s)" -v b="$toxi_rps" 'BEGIN{printf "%.2f", a / b}')
verdict() { if awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN{ exit !((op == "le") ? v <= g : v >= g) }'; then echo met; else echo "NOT met"; fi; }
say "## goals (chaoslab-http)"
say "- added p50 ≤ 50 µs: ${h50} µs — $(verdict "$h50" 50 le)"
say "- added p99 ≤ 500 µs: ${h99} µs — $(verdict "$h99" 500 le)"
say "- throughput ≥ 2 × Toxiproxy: ${hx} × — $(verdict "$hx" 2 ge)"
say ""
say "# load average (1, 5, 15 min) before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
say "# took $((SECONDS - started)) s; raw outputs in ${OUT#"$ROOT"/}/"
find "$OUT" -name '*.err' -empty -delete

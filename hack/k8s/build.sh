#!/usr/bin/env bash
# Builds the local test cluster's binaries from Go modules, pinned in hack/k8s/versions.env, into a
# cache outside the repo keyed by version and build recipe, and prints the directory that holds
# links to all of them (put it on PATH). Progress goes to stderr; stdout is only that directory.
#
#   hack/k8s/build.sh                 build what is missing (all parts), print the bin directory
#   hack/k8s/build.sh etcd kwok       only these parts (k8s, etcd, kwok, metrics-server, cni-plugins, coredns)
#   hack/k8s/build.sh all             the control plane's parts and the real node's (cni-plugins, coredns)
#   CHAOSLAB_CACHE=/path hack/k8s/build.sh   cache root (default ~/.cache/chaoslab)
#
# Parts and where they land (HASH = short hash of the build recipe, Go version included):
#   k8s             $CACHE/k8s-$K8S_VERSION-HASH/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   etcd            $CACHE/etcd-$ETCD_VERSION-HASH/bin/{etcd,etcdctl}
#   kwok            $CACHE/kwok-$KWOK_VERSION/bin/kwok, and kwok's metrics configs under
#                   $CACHE/kwok-$KWOK_VERSION/kustomize/metrics/{resource,usage}/ (also linked at
#                   $CACHE/k8s-share/kwok-metrics)
#   metrics-server  $CACHE/metrics-server-$METRICS_SERVER_VERSION/bin/metrics-server
#   cni-plugins     $CACHE/cni-plugins-$CNI_PLUGINS_VERSION-HASH/bin/{bridge,host-local,loopback,portmap}
#                   (the real node's CNI bin dir; linked at $CACHE/k8s-share/cni-bin, not on PATH)
#   coredns         $CACHE/coredns-$COREDNS_VERSION-HASH/bin/coredns (only $COREDNS_PLUGINS compiled in)
#   links           $CACHE/k8s-bin/*   <- printed on stdout
# A part whose binaries are present is skipped without running any build, so a warm run takes
# seconds. Each part is built in a temporary directory and renamed into place when complete, so an
# interrupted build leaves no half-built cache entry. The generated wrapper modules (go.mod, go.sum)
# and per-build logs (/usr/bin/time -v output) stay in $CACHE/work/ for inspection.
#
# Why wrapper modules: `go install k8s.io/kubernetes/cmd/...@v1.34.10` fails because k8s.io/kubernetes
# replaces its staging modules (k8s.io/api, client-go, ...) with ./staging paths. Our wrapper requires
# k8s.io/kubernetes and replaces each of those modules with its published v0.x tag, the list being read
# from k8s.io/kubernetes' own go.mod. etcd's server module has ../ replaces too; a wrapper that
# requires it builds it. kwok, metrics-server and the CNI plugins install with plain `go install`.
# CoreDNS is built from a main of our own that imports CoreDNS' server and only the plugins the
# cluster's DNS uses (CoreDNS documents this way of choosing plugins without `go generate`).
#
# Locks: one build of a part at a time per cache. The control plane's parts share one lock
# ($CACHE/.k8s-build.lock, as before); the real node's parts each have their own, so they build
# while another run builds Kubernetes.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/k8s/versions.env
source "$HERE/versions.env"

CACHE=${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}
BIN=$CACHE/k8s-bin
WORKROOT=$CACHE/work
# Built when no part is named (what `make tools` and plain `hack/cluster up` need).
DEFAULT_PARTS=(k8s etcd kwok metrics-server)
NODE_PARTS=(cni-plugins coredns)

log() { printf '[k8s-build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }

parts=()
for a in "$@"; do
  case $a in
    -h|--help) usage; exit 0 ;;
    k8s|etcd|kwok|metrics-server|cni-plugins|coredns) parts+=("$a") ;;
    all) parts+=("${DEFAULT_PARTS[@]}" "${NODE_PARTS[@]}") ;;
    *) usage; die "unknown argument: $a" ;;
  esac
done
[ ${#parts[@]} -gt 0 ] || parts=("${DEFAULT_PARTS[@]}")

# --- Go environment: the same for every build ------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH (Go 1.$GO_MIN_MINOR or newer builds these parts)"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off GO111MODULE=on GOFLAGS=-buildvcs=false
{ read -r GOVERSION; read -r GOOS; read -r GOARCH; } < <(go env GOVERSION GOOS GOARCH)
go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$GOVERSION")
[ "$go_minor" -ge "$GO_MIN_MINOR" ] || die "$GOVERSION is too old: etcd $ETCD_VERSION and kwok $KWOK_VERSION need go1.$GO_MIN_MINOR (GOTOOLCHAIN=local, no toolchain download)"
TOOLCHAIN="$GOVERSION $GOOS/$GOARCH CGO_ENABLED=0 -trimpath"

# --- Helpers -----------------------------------------------------------------------------------------
TMPS=() HB_PID='' CMD_PID=''
cleanup() {
  [ -z "$CMD_PID" ] || kill -TERM -- "-$CMD_PID" 2>/dev/null || kill -TERM "$CMD_PID" 2>/dev/null || true
  [ -z "$HB_PID" ] || kill "$HB_PID" 2>/dev/null || true
  local t
  for t in "${TMPS[@]}"; do [ ! -e "$t" ] || { chmod -R u+w "$t" 2>/dev/null; rm -rf "$t"; }; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

short_hash() { sha256sum | cut -c1-10; }

# heartbeat LABEL START: a line a minute while a long, silent go build runs.
heartbeat() {
  local s=
  trap '[ -z "$s" ] || kill "$s" 2>/dev/null; exit 0' TERM INT HUP
  while :; do
    sleep 60 & s=$!
    wait "$s"
    kill -0 $$ 2>/dev/null || exit 0 # the build script is gone
    log "  $1: still building ($(( $(date +%s) - $2 ))s)"
  done
}

# timed LOGDIR LABEL CMD...: run CMD (its output to stderr), log start, end, elapsed seconds and the
# peak RSS of its largest process (from /usr/bin/time -v when installed). CMD runs in its own process
# group and the script waits for it with `wait`, so Ctrl-C or a TERM to the script stops the whole
# go build at once and the EXIT trap removes the half-built directory.
timed() {
  local logdir=$1 label=$2; shift 2
  local start rc=0 tf=$logdir/$label.time rss=
  start=$(date +%s)
  log "  $label: start"
  heartbeat "$label" "$start" >&2 & HB_PID=$!
  [ ! -x /usr/bin/time ] || set -- /usr/bin/time -v -o "$tf" "$@"
  if command -v setsid >/dev/null; then set -- setsid "$@"; fi
  "$@" >&2 & CMD_PID=$!
  wait "$CMD_PID" || rc=$?
  CMD_PID=
  kill "$HB_PID" 2>/dev/null || true; wait "$HB_PID" 2>/dev/null || true; HB_PID=
  [ ! -f "$tf" ] || rss=$(awk -F': ' '/Maximum resident set size/ { printf ", peak RSS %d MiB", $2 / 1024 }' "$tf")
  [ "$rc" -eq 0 ] || die "$label failed (exit $rc) after $(( $(date +%s) - start ))s: see the output above"
  log "  $label: done in $(( $(date +%s) - start ))s$rss"
}

# json_field FIELD < `go mod download -json` output
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n1; }

# module_info MOD@VERSION: download the module, print "GoMod Dir Time" (paths have no spaces).
module_info() {
  local j info
  j=$(cd "$WORKROOT" && go mod download -json "$1") || die "go mod download $1 failed: $j"
  info=$(json_field Info <<<"$j")
  printf '%s %s %s\n' "$(json_field GoMod <<<"$j")" "$(json_field Dir <<<"$j")" \
    "$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")"
}

# fresh_tmp OUT: a new, empty build directory next to OUT (stale ones from killed runs are removed:
# we hold the cache lock, so no other run is using them).
fresh_tmp() {
  local t
  for t in "$1".tmp.*; do [ ! -e "$t" ] || { chmod -R u+w "$t"; rm -rf "$t"; }; done
  TMPS+=("$1.tmp.$$")
  mkdir -p "$1.tmp.$$/bin"
}

# finish TMP OUT: move a completed build into place (a rename: atomic on one file system).
finish() {
  rm -rf "$2"
  mv "$1" "$2"
}

# check_version BINARY EXPECTED ARGS...: the binary runs and reports EXPECTED.
check_version() {
  local bin=$1 want=$2 out; shift 2
  out=$("$bin" "$@" 2>&1) || die "$(basename "$bin") $* failed: $out"
  grep -qF -- "$want" <<<"$out" || die "$(basename "$bin") $* does not report $want: $out"
  log "  $(basename "$bin") $*: $(head -n1 <<<"$out")"
}

# --- Kubernetes --------------------------------------------------------------------------------------
K8S_GO_LINE=1.24.0          # k8s.io/kubernetes v1.34's own go line: keeps 1.34's language semantics
K8S_GODEBUG=default=go1.24  # and runtime defaults although Go 1.26 builds it
k8s_major=${K8S_VERSION#v}; k8s_major=${k8s_major%%.*}
k8s_minor=${K8S_VERSION#v*.}; k8s_minor=${k8s_minor%%.*}

# k8s_ldflags BUILD_DATE: the version stamps Kubernetes' own build sets (hack/lib/version.sh), so that
# `--version`, `kubectl version` and the apiserver's /version report $K8S_VERSION, not v0.0.0.
k8s_ldflags() {
  local f="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$k8s_major -X $p.gitMinor=$k8s_minor"
    f+=" -X $p.gitTreeState=clean -X $p.buildDate=$1"
  done
  printf '%s' "$f"
}

# Everything that decides the k8s binaries; its hash names the cache directory. The replace list is
# a function of K8S_VERSION (read from that version's go.mod), the build date is that version's
# publication time on the proxy (reproducible), so neither needs a download to compute the hash.
k8s_recipe() {
  printf '%s\n' "toolchain $TOOLCHAIN" "go $K8S_GO_LINE" "godebug $K8S_GODEBUG" \
    "require k8s.io/kubernetes $K8S_VERSION" "require google.golang.org/protobuf $K8S_PROTOBUF_VERSION" \
    "replace ./staging/* of k8s.io/kubernetes@$K8S_VERSION => $K8S_STAGING_VERSION" \
    "ldflags $(k8s_ldflags '<module-time>')" "binaries $K8S_BINARIES"
}
K8S_DIR=$CACHE/k8s-$K8S_VERSION-$(k8s_recipe | short_hash)

k8s_present() { local b; for b in $K8S_BINARIES; do [ -x "$K8S_DIR/bin/$b" ] || return 1; done; }

build_k8s() {
  local work info gomod dir mtime staging b m tmp
  work=$WORKROOT/$(basename "$K8S_DIR")
  tmp=$K8S_DIR.tmp.$$; fresh_tmp "$K8S_DIR"
  rm -rf "$work" && mkdir -p "$work/logs"

  info=$(module_info "k8s.io/kubernetes@$K8S_VERSION"); read -r gomod dir mtime <<<"$info"
  [ -f "$gomod" ] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION"
  # Every module that k8s.io/kubernetes replaces with ./staging/src/..., in its own go.mod.
  mapfile -t staging < <(awk '/=>[[:space:]]*\.\/staging\// { print ($1 == "replace") ? $2 : $1 }' "$gomod" | sort -u)
  [ ${#staging[@]} -gt 0 ] || die "found no ./staging replaces in $gomod"
  log "  k8s.io/kubernetes@$K8S_VERSION replaces ${#staging[@]} staging modules; pinning them to $K8S_STAGING_VERSION"

  {
    printf 'module chaoslab.local/k8s-build\n\ngo %s\n\ngodebug %s\n\ntool (\n' "$K8S_GO_LINE" "$K8S_GODEBUG"
    for b in $K8S_BINARIES; do printf '\tk8s.io/kubernetes/cmd/%s\n' "$b"; done
    printf ')\n\nrequire (\n\tgoogle.golang.org/protobuf %s\n\tk8s.io/kubernetes %s\n)\n\nreplace (\n' \
      "$K8S_PROTOBUF_VERSION" "$K8S_VERSION"
    for m in "${staging[@]}"; do printf '\t%s => %s %s\n' "$m" "$m" "$K8S_STAGING_VERSION"; done
    printf ')\n'
  } >"$work/go.mod"
  timed "$work/logs" "k8s modules (go mod tidy)" go -C "$work" mod tidy

  local ldflags; ldflags=$(k8s_ldflags "$mtime")
  for b in $K8S_BINARIES; do
    timed "$work/logs" "$b" go -C "$work" build -trimpath -ldflags "$ldflags" -o "$tmp/bin/$b" "k8s.io/kubernetes/cmd/$b"
    if [ "$b" = kubectl ]; then check_version "$tmp/bin/$b" "$K8S_VERSION" version --client
    else check_version "$tmp/bin/$b" "$K8S_VERSION" --version; fi
  done
  finish "$tmp" "$K8S_DIR"
}

# --- etcd --------------------------------------------------------------------------------------------
# etcd 3.6's `etcd` main package is the root of go.etcd.io/etcd/server/v3 (server/main.go).
ETCD_LDFLAGS="-s -w"
etcd_recipe() {
  printf '%s\n' "toolchain $TOOLCHAIN" "go <go line of go.etcd.io/etcd/server/v3@$ETCD_VERSION>" \
    "require go.etcd.io/etcd/server/v3 $ETCD_VERSION" "require go.etcd.io/etcd/etcdctl/v3 $ETCD_VERSION" \
    "ldflags $ETCD_LDFLAGS" "binaries etcd=go.etcd.io/etcd/server/v3 etcdctl=go.etcd.io/etcd/etcdctl/v3"
}
ETCD_DIR=$CACHE/etcd-$ETCD_VERSION-$(etcd_recipe | short_hash)

etcd_present() { [ -x "$ETCD_DIR/bin/etcd" ] && [ -x "$ETCD_DIR/bin/etcdctl" ]; }

build_etcd() {
  local work info gomod dir mtime goline tmp
  work=$WORKROOT/$(basename "$ETCD_DIR")
  tmp=$ETCD_DIR.tmp.$$; fresh_tmp "$ETCD_DIR"
  rm -rf "$work" && mkdir -p "$work/logs"
  info=$(module_info "go.etcd.io/etcd/server/v3@$ETCD_VERSION"); read -r gomod dir mtime <<<"$info"
  goline=$(awk '$1 == "go" { print $2; exit }' "$gomod")
  printf 'module chaoslab.local/etcd-build\n\ngo %s\n\ntool (\n\tgo.etcd.io/etcd/etcdctl/v3\n\tgo.etcd.io/etcd/server/v3\n)\n\nrequire (\n\tgo.etcd.io/etcd/etcdctl/v3 %s\n\tgo.etcd.io/etcd/server/v3 %s\n)\n' \
    "$goline" "$ETCD_VERSION" "$ETCD_VERSION" >"$work/go.mod"
  timed "$work/logs" "etcd modules (go mod tidy)" go -C "$work" mod tidy
  timed "$work/logs" etcd go -C "$work" build -trimpath -ldflags "$ETCD_LDFLAGS" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3
  check_version "$tmp/bin/etcd" "etcd Version: ${ETCD_VERSION#v}" --version
  timed "$work/logs" etcdctl go -C "$work" build -trimpath -ldflags "$ETCD_LDFLAGS" -o "$tmp/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3
  check_version "$tmp/bin/etcdctl" "etcdctl version: ${ETCD_VERSION#v}" version
  finish "$tmp" "$ETCD_DIR"
}

# --- kwok and metrics-server: plain go install -------------------------------------------------------
KWOK_DIR=$CACHE/kwok-$KWOK_VERSION
MS_DIR=$CACHE/metrics-server-$METRICS_SERVER_VERSION

kwok_present() { [ -x "$KWOK_DIR/bin/kwok" ] && [ -d "$KWOK_DIR/kustomize/metrics/usage" ]; }

build_kwok() {
  local work=$WORKROOT/kwok-$KWOK_VERSION tmp=$KWOK_DIR.tmp.$$ info gomod dir mtime
  fresh_tmp "$KWOK_DIR"
  rm -rf "$work" && mkdir -p "$work/logs"
  timed "$work/logs" kwok env GOBIN="$tmp/bin" go -C "$work" install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  check_version "$tmp/bin/kwok" "${KWOK_VERSION#v}" --version
  # kwok's resource-usage and metrics configs (usage from pod annotations; per-node /metrics/resource).
  info=$(module_info "sigs.k8s.io/kwok@$KWOK_VERSION"); read -r gomod dir mtime <<<"$info"
  [ -d "$dir/kustomize/metrics" ] || die "no kustomize/metrics in $dir"
  mkdir -p "$tmp/kustomize"
  cp -R "$dir/kustomize/metrics" "$tmp/kustomize/metrics"
  chmod -R u+w "$tmp/kustomize" # the module cache is read-only
  log "  kwok metrics configs: $(cd "$tmp" && find kustomize/metrics -name '*.yaml' | sort | tr '\n' ' ')"
  finish "$tmp" "$KWOK_DIR"
}

ms_present() { [ -x "$MS_DIR/bin/metrics-server" ]; }

build_metrics_server() {
  local work=$WORKROOT/metrics-server-$METRICS_SERVER_VERSION tmp=$MS_DIR.tmp.$$ info gomod dir mtime
  fresh_tmp "$MS_DIR"
  rm -rf "$work" && mkdir -p "$work/logs"
  info=$(module_info "sigs.k8s.io/metrics-server@$METRICS_SERVER_VERSION"); read -r gomod dir mtime <<<"$info"
  # The stamps metrics-server's Makefile sets.
  local p=k8s.io/client-go/pkg/version
  timed "$work/logs" metrics-server env GOBIN="$tmp/bin" go -C "$work" install -trimpath \
    -ldflags "-s -w -X $p.gitVersion=$METRICS_SERVER_VERSION -X $p.gitTreeState=clean -X $p.buildDate=$mtime" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
  check_version "$tmp/bin/metrics-server" "$METRICS_SERVER_VERSION" --version
  finish "$tmp" "$MS_DIR"
}

# --- CNI plugins (the real node): plain go install ---------------------------------------------------
CNI_MOD=github.com/containernetworking/plugins
# The stamp the plugins' own build sets (build_linux.sh): `bridge` run by hand prints it.
CNI_LDFLAGS="-s -w -X $CNI_MOD/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION"
cni_pkg() { # cni_pkg NAME: the plugin's package in the module
  case $1 in
    host-local|dhcp|static) echo "$CNI_MOD/plugins/ipam/$1" ;;
    portmap|bandwidth|firewall|sbr|tuning|vrf) echo "$CNI_MOD/plugins/meta/$1" ;;
    *) echo "$CNI_MOD/plugins/main/$1" ;;
  esac
}
cni_recipe() {
  printf '%s\n' "toolchain $TOOLCHAIN" "module $CNI_MOD $CNI_PLUGINS_VERSION" "ldflags $CNI_LDFLAGS" "plugins $CNI_PLUGINS"
}
CNI_DIR=$CACHE/cni-plugins-$CNI_PLUGINS_VERSION-$(cni_recipe | short_hash)

cni_present() { local p; for p in $CNI_PLUGINS; do [ -x "$CNI_DIR/bin/$p" ] || return 1; done; }

build_cni_plugins() {
  local work=$WORKROOT/$(basename "$CNI_DIR") tmp=$CNI_DIR.tmp.$$ p pkgs=()
  fresh_tmp "$CNI_DIR"
  rm -rf "$work" && mkdir -p "$work/logs"
  for p in $CNI_PLUGINS; do pkgs+=("$(cni_pkg "$p")@$CNI_PLUGINS_VERSION"); done
  timed "$work/logs" "cni plugins" env GOBIN="$tmp/bin" go -C "$work" install -trimpath -ldflags "$CNI_LDFLAGS" "${pkgs[@]}"
  # Run by hand (no CNI_COMMAND), a plugin prints its name and version.
  for p in $CNI_PLUGINS; do check_version "$tmp/bin/$p" "$CNI_PLUGINS_VERSION"; done
  finish "$tmp" "$CNI_DIR"
}

# --- CoreDNS (the real node's cluster DNS): a main with only the plugins we use -----------------------
COREDNS_MOD=github.com/coredns/coredns
COREDNS_LDFLAGS="-s -w"
coredns_recipe() {
  printf '%s\n' "toolchain $TOOLCHAIN" "go <go line of $COREDNS_MOD@$COREDNS_VERSION>" "require $COREDNS_MOD $COREDNS_VERSION" \
    "plugins $COREDNS_PLUGINS" "ldflags $COREDNS_LDFLAGS"
}
COREDNS_DIR=$CACHE/coredns-$COREDNS_VERSION-$(coredns_recipe | short_hash)

coredns_present() { [ -x "$COREDNS_DIR/bin/coredns" ]; }

build_coredns() {
  local work=$WORKROOT/$(basename "$COREDNS_DIR") tmp=$COREDNS_DIR.tmp.$$ info gomod dir mtime goline p
  fresh_tmp "$COREDNS_DIR"
  rm -rf "$work" && mkdir -p "$work/logs"
  info=$(module_info "$COREDNS_MOD@$COREDNS_VERSION"); read -r gomod dir mtime <<<"$info"
  goline=$(awk '$1 == "go" { print $2; exit }' "$gomod")
  printf 'module chaoslab.local/coredns-build\n\ngo %s\n\nrequire %s %s\n' "$goline" "$COREDNS_MOD" "$COREDNS_VERSION" >"$work/go.mod"
  {
    printf '// Generated by hack/k8s/build.sh: CoreDNS with only the plugins the cluster DNS uses.\npackage main\n\nimport (\n'
    printf '\t"%s/coremain"\n' "$COREDNS_MOD"
    for p in $COREDNS_PLUGINS; do printf '\t_ "%s/plugin/%s"\n' "$COREDNS_MOD" "$p"; done
    printf ')\n\nfunc main() { coremain.Run() }\n'
  } >"$work/main.go"
  timed "$work/logs" "coredns modules (go mod tidy)" go -C "$work" mod tidy
  timed "$work/logs" coredns go -C "$work" build -trimpath -ldflags "$COREDNS_LDFLAGS" -o "$tmp/bin/coredns" .
  check_version "$tmp/bin/coredns" "CoreDNS-${COREDNS_VERSION#v}" -version
  local plugins; plugins=$("$tmp/bin/coredns" -plugins)
  for p in $COREDNS_PLUGINS; do grep -Eqx "[[:space:]]*(dns\.)?$p" <<<"$plugins" || die "coredns -plugins does not list $p: $plugins"; done
  finish "$tmp" "$COREDNS_DIR"
}

# --- Main --------------------------------------------------------------------------------------------
mkdir -p "$CACHE" "$WORKROOT" "$BIN"
# lock PART: one build of PART at a time per cache (fd 9; the next lock or the exit releases it). A
# second run waits, then finds the binaries present. The control plane's parts keep the one lock they
# always had, so this script and an older copy of it never build the same part at once.
lock() {
  command -v flock >/dev/null || return 0
  local f=$CACHE/.k8s-build.lock
  case $1 in cni-plugins|coredns) f=$CACHE/.k8s-build-$1.lock ;; esac
  exec 9>"$f"
  flock -n 9 || { log "another hack/k8s/build.sh is building in $CACHE ($f); waiting for it"; flock 9; }
}

total_start=$(date +%s)
summary=()
for part in "${parts[@]}"; do
  case $part in
    k8s) present=k8s_present build=build_k8s what="kubernetes $K8S_VERSION ($K8S_BINARIES)" dir=$K8S_DIR ;;
    etcd) present=etcd_present build=build_etcd what="etcd $ETCD_VERSION" dir=$ETCD_DIR ;;
    kwok) present=kwok_present build=build_kwok what="kwok $KWOK_VERSION" dir=$KWOK_DIR ;;
    metrics-server) present=ms_present build=build_metrics_server what="metrics-server $METRICS_SERVER_VERSION" dir=$MS_DIR ;;
    cni-plugins) present=cni_present build=build_cni_plugins what="CNI plugins $CNI_PLUGINS_VERSION ($CNI_PLUGINS)" dir=$CNI_DIR ;;
    coredns) present=coredns_present build=build_coredns what="CoreDNS $COREDNS_VERSION ($COREDNS_PLUGINS)" dir=$COREDNS_DIR ;;
  esac
  if $present; then
    summary+=("$part cached")
    continue
  fi
  lock "$part"
  # Another run may have built it while this one waited for the lock.
  if $present; then
    summary+=("$part cached (built by another run)")
    continue
  fi
  start=$(date +%s)
  log "$part: building $what -> $dir"
  $build
  summary+=("$part $(( $(date +%s) - start ))s")
  log "$part: done in $(( $(date +%s) - start ))s"
done

# Links to every built binary, and a stable path to kwok's metrics configs.
for d in "$K8S_DIR" "$ETCD_DIR" "$KWOK_DIR" "$MS_DIR" "$COREDNS_DIR"; do
  [ -d "$d/bin" ] || continue
  for f in "$d"/bin/*; do ln -sfn "$f" "$BIN/$(basename "$f")"; done
done
if [ -d "$KWOK_DIR/kustomize/metrics" ]; then
  mkdir -p "$CACHE/k8s-share" && ln -sfn "$KWOK_DIR/kustomize/metrics" "$CACHE/k8s-share/kwok-metrics"
fi
# The CNI plugins are the node's, not tools: a directory of their own (containerd's CNI bin_dir).
if [ -d "$CNI_DIR/bin" ]; then
  mkdir -p "$CACHE/k8s-share" && ln -sfn "$CNI_DIR/bin" "$CACHE/k8s-share/cni-bin"
fi

log "ready in $(( $(date +%s) - total_start ))s ($(IFS=,; printf '%s' "${summary[*]}" | sed 's/,/, /g')) -> $BIN"
echo "$BIN"

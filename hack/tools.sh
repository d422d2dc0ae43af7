#!/usr/bin/env bash
# Installs the tools the tests need, pinned, into a cache outside the repo keyed by version, and
# prints the directory to put on PATH. A warm cache makes this a no-op.
#   hack/tools.sh            build or reuse everything, print the bin directory
# Debian packages come from hack/deps.sh; Go-built tools come from here.
set -euo pipefail

HELM_VERSION=v3.21.4
CACHE=${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}
BIN=$CACHE/bin
mkdir -p "$BIN"

log() { printf '[tools] %s\n' "$*" >&2; }

# go_tool NAME VERSION MODULE-PATH [LDFLAGS]: build MODULE-PATH@VERSION once into a cache
# directory keyed by the version and the link flags.
go_tool() {
  local name=$1 version=$2 module=$3 extra=${4:-}
  local dir=$CACHE/$name-$version-$(printf '%s' "$extra" | sha1sum | cut -c1-8)
  if [ ! -x "$dir/$name" ]; then
    command -v go >/dev/null || { log "go is required to build $name $version and is not on PATH"; exit 1; }
    log "building $name $version from $module (cold cache; a few minutes)"
    local start=$SECONDS
    mkdir -p "$dir.tmp"
    GOBIN=$dir.tmp GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath \
      go install -ldflags "-s -w $extra" "$module@$version" >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    log "built $name $version in $((SECONDS - start))s"
  fi
  ln -sf "$dir/$name" "$BIN/$name"
}

# Stamp helm's version and the Kubernetes version it assumes offline (helm's own Makefile does
# the same): unstamped, `helm version` says v3.21 and `helm template` assumes Kubernetes 1.20.
HELM_K8S_MINOR=36 # helm v3.21.4 is built on k8s.io modules v0.36
go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "\
-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR"
echo "$BIN"

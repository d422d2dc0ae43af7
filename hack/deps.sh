#!/usr/bin/env bash
# Installs what building and testing chaoslab needs on a fresh machine, and checks the
# toolchains that come with the machine. Idempotent: a ready machine is left as it is.
#   - Debian packages (apt-get, as root): make, git, ca-certificates, build-essential, and for the
#     local cluster: iproute2 (network namespaces), openssl (its PKI), curl (health checks),
#     procps (kill), util-linux (setsid, flock), time (build memory figures), bc (bench/),
#     chromium (headless: the HTML report is opened and screenshotted in tests/it/lab.rs), and for
#     the real node (hack/cluster up --real-node): containerd 1.6 and runc 1.1 (the container
#     runtime), iptables and conntrack (kube-proxy), umoci and jq (OCI images without Docker,
#     hack/image.sh; its pause image is Kubernetes' pause.c built with build-essential's gcc)
#   - rustup components: rustfmt, clippy
#   - Go (>= 1.26, see hack/k8s/versions.env) must be on PATH: it builds helm and Kubernetes' parts.
set -euo pipefail

log() { printf '[deps] %s\n' "$*" >&2; }

PACKAGES=(make git ca-certificates build-essential iproute2 openssl curl procps util-linux time bc chromium
  containerd runc iptables conntrack umoci jq)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { log "cargo is not on PATH: install Rust with rustup (rust-version 1.89 or newer)"; exit 1; }
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || { log "adding rustup component $c"; rustup component add "$c"; }
  done
fi

# shellcheck source=k8s/versions.env
source "$(dirname "$0")/k8s/versions.env" # GO_MIN_MINOR: what etcd and kwok need
command -v go >/dev/null || { log "go is not on PATH: Go 1.$GO_MIN_MINOR or newer builds helm and Kubernetes' parts from their modules"; exit 1; }
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$go_minor" -ge "$GO_MIN_MINOR" ] || { log "go $(go env GOVERSION) is too old: 1.$GO_MIN_MINOR or newer is needed"; exit 1; }
log "ok: $(cargo --version), $(go env GOVERSION)"

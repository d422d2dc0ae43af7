#!/usr/bin/env bash
# Container images without Docker and without a registry: OCI archives built with umoci, for the
# real node's containerd (`ctr -n k8s.io images import`, done by `hack/cluster up --real-node`).
#
#   hack/image.sh build      cargo build --release --locked, then the image chaoslab:<appVersion of
#                            charts/chaoslab/Chart.yaml> with the layout of the Dockerfile's final
#                            stage; prints the archive's path (target/image/chaoslab-<version>.oci.tar)
#   hack/image.sh pause      the sandbox ("pause") image, built from Kubernetes' own pause.c (in the
#                            pinned k8s.io/kubernetes module) and cached in $CHAOSLAB_CACHE/images
#   hack/image.sh archives   both; prints the pause archive's path, then chaoslab's
#   hack/image.sh verify [ARCHIVE]
#                            holds the chaoslab image's config and files to the Dockerfile: user,
#                            entrypoint, the binary's path and mode, the libraries it links, CA
#                            certificates, the nonroot user. Exits 1 on any mismatch, saying which.
#
# The chaoslab image stands for the Dockerfile's final stage (gcr.io/distroless/cc-debian12:nonroot
# plus the binary), made from this machine's Debian 12 files: the binary, the shared libraries ldd
# names (glibc, libgcc_s), ca-certificates, /etc/passwd and /etc/group with nonroot (65532),
# /home/nonroot, /tmp. The image name is docker.io/library/chaoslab:<version>, which is what
# Kubernetes makes of the chart's `chaoslab:<version>`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=k8s/versions.env
source "$ROOT/hack/k8s/versions.env"
CACHE=${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}
VERSION=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$ROOT/charts/chaoslab/Chart.yaml")
IMAGE=docker.io/library/chaoslab:$VERSION
OUT=$ROOT/target/image
ARCHIVE=$OUT/chaoslab-$VERSION.oci.tar
# What distroless' cc-debian12 image sets besides the Dockerfile's USER and ENTRYPOINT.
BASE_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
BASE_WORKDIR=/home/nonroot

log() { printf '[image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need() { local c; for c in "$@"; do command -v "$c" >/dev/null || die "$c is missing: run hack/deps.sh"; done; }

TMPS=()
cleanup() { local t; for t in "${TMPS[@]}"; do rm -rf "$t"; done; }
trap cleanup EXIT

# oci_image LAYOUT TAG NAME ROOTFS-FILLER [umoci config flags...]: a one-layer image whose rootfs the
# function ROOTFS-FILLER fills (it gets the rootfs directory), tagged TAG in the layout, with the
# containerd name annotation NAME on its manifest.
oci_image() {
  local layout=$1 tag=$2 name=$3 filler=$4; shift 4
  local bundle=$layout.bundle
  rm -rf "$layout" "$bundle"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
  "$filler" "$bundle/rootfs"
  umoci repack --image "$layout:$tag" "$bundle"
  umoci config --image "$layout:$tag" --os linux --architecture amd64 "$@"
  umoci gc --layout "$layout"
  rm -rf "$bundle"
  # ctr names an imported image by this annotation (without it, by the bare tag).
  jq --arg tag "$tag" --arg name "$name" \
    '.manifests |= map(if .annotations["org.opencontainers.image.ref.name"] == $tag
                       then .annotations["io.containerd.image.name"] = $name else . end)' \
    "$layout/index.json" >"$layout/index.json.new"
  mv "$layout/index.json.new" "$layout/index.json"
}

# tar_layout LAYOUT ARCHIVE: the layout as an archive, the same bytes for the same content.
tar_layout() {
  tar -C "$1" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$2.tmp" .
  mv "$2.tmp" "$2"
}

# --- chaoslab ---------------------------------------------------------------------------------------
BINARY=$ROOT/target/release/chaoslab

# The libraries the binary loads, as ldd names them (the interpreter included).
linked_libs() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u
}

fill_chaoslab() {
  local r=$1 lib
  install -D -m 0755 "$BINARY" "$r/usr/local/bin/chaoslab"
  for lib in $(linked_libs "$BINARY"); do
    install -D -m 0755 "$(readlink -f "$lib")" "$r$lib"
  done
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  mkdir -p "$r/etc" "$r/home/nonroot" "$r/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$r/etc/group"
  printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
  chown 65532:65532 "$r/home/nonroot"
  chmod 0700 "$r/home/nonroot"
  chmod 1777 "$r/tmp"
}

build_chaoslab() {
  need cargo umoci jq ldd
  [ -n "$VERSION" ] || die "no appVersion in charts/chaoslab/Chart.yaml"
  local start=$SECONDS
  log "cargo build --release --locked (the image's binary)"
  (cd "$ROOT" && cargo build --release --locked --bin chaoslab) >&2 || die "cargo build --release failed"
  log "release binary ready after $((SECONDS - start))s"
  mkdir -p "$OUT"
  local layout=$OUT/chaoslab-$VERSION.layout env_flags=() e
  for e in "${BASE_ENV[@]}"; do env_flags+=(--config.env "$e"); done
  oci_image "$layout" "$VERSION" "$IMAGE" fill_chaoslab \
    --config.user 65532:65532 --clear=config.entrypoint --config.entrypoint /usr/local/bin/chaoslab \
    --clear=config.cmd --config.workingdir "$BASE_WORKDIR" "${env_flags[@]}" \
    --author chaoslab --created "$(date -u -d @"$(stat -c %Y "$BINARY")" +%Y-%m-%dT%H:%M:%SZ)"
  tar_layout "$layout" "$ARCHIVE"
  rm -rf "$layout"
  verify "$ARCHIVE" >&2
  log "$IMAGE -> $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1)) in $((SECONDS - start))s"
  echo "$ARCHIVE"
}

# --- pause --------------------------------------------------------------------------------------------
# Kubernetes' pause (build/pause/linux/pause.c: sleeps, reaps children, exits on TERM/INT), static.
pause_archive() {
  need gcc umoci jq go
  local dir tag src out
  dir=$(cd "$CACHE" 2>/dev/null && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') \
    || die "go mod download k8s.io/kubernetes@$K8S_VERSION failed"
  src=$dir/build/pause/linux/pause.c
  [ -f "$src" ] || die "no $src in k8s.io/kubernetes@$K8S_VERSION"
  tag=$(sed -n 's/^TAG ?= *//p' "$dir/build/pause/Makefile")
  [ -n "$tag" ] || die "no pause TAG in $dir/build/pause/Makefile"
  out=$CACHE/images/pause-$tag-$K8S_VERSION.oci.tar
  if [ ! -f "$out" ]; then
    mkdir -p "$CACHE/images"
    local work; work=$(mktemp -d "$CACHE/images/pause.tmp.XXXXXX"); TMPS+=("$work")
    gcc -Os -Wall -Werror -static -DVERSION="v$tag-$K8S_VERSION" -o "$work/pause" "$src" || die "gcc could not build pause.c"
    strip "$work/pause"
    PAUSE_BIN=$work/pause
    oci_image "$work/layout" "$tag" "chaoslab.local/pause:$tag" fill_pause \
      --config.user 65535:65535 --clear=config.entrypoint --config.entrypoint /pause --clear=config.cmd
    tar_layout "$work/layout" "$out"
    log "chaoslab.local/pause:$tag -> $out"
  fi
  echo "$out"
}
fill_pause() { install -D -m 0755 "$PAUSE_BIN" "$1/pause"; }

# --- verify -------------------------------------------------------------------------------------------
# The Dockerfile's final stage: its USER, ENTRYPOINT and the destination of its COPY of the binary.
dockerfile_final() {
  awk '/^FROM /{ stage = "" } { stage = stage $0 "\n" } END { printf "%s", stage }' "$ROOT/Dockerfile"
}

verify() {
  need jq tar
  local archive=${1:-$ARCHIVE} fails=0 work final want_user want_entry want_bin index manifest config layer
  [ -f "$archive" ] || die "no image archive $archive (hack/image.sh build)"
  work=$(mktemp -d); TMPS+=("$work")
  tar -C "$work" -xf "$archive"
  final=$(dockerfile_final)
  want_user=$(awk '$1 == "USER" { print $2 }' <<<"$final" | tail -n1)
  want_entry=$(sed -n 's/^ENTRYPOINT[[:space:]]*//p' <<<"$final" | tail -n1 | jq -c .)
  want_bin=$(awk '$1 == "COPY" { print $NF }' <<<"$final" | tail -n1)
  [ -n "$want_user" ] && [ -n "$want_entry" ] && [ -n "$want_bin" ] || die "cannot read USER, ENTRYPOINT and COPY from the Dockerfile's final stage"

  fail() { echo "MISMATCH: $*"; fails=$((fails + 1)); }
  ok() { echo "ok: $*"; }
  blob() { echo "$work/blobs/${1%%:*}/${1#*:}"; }

  index=$work/index.json
  [ "$(jq -r '.manifests | length' "$index")" = 1 ] || fail "the archive holds $(jq -r '.manifests | length' "$index") manifests, expected 1"
  local name; name=$(jq -r '.manifests[0].annotations["io.containerd.image.name"] // ""' "$index")
  [ "$name" = "$IMAGE" ] && ok "image name $name" || fail "image name '$name', expected $IMAGE"
  manifest=$(blob "$(jq -r '.manifests[0].digest' "$index")")
  config=$(blob "$(jq -r '.config.digest' "$manifest")")
  local user entry
  user=$(jq -r '.config.User // ""' "$config")
  entry=$(jq -c '.config.Entrypoint // []' "$config")
  [ "$user" = "$want_user" ] && ok "user $user (Dockerfile USER $want_user)" || fail "user '$user', the Dockerfile says USER $want_user"
  [ "$entry" = "$want_entry" ] && ok "entrypoint $entry" || fail "entrypoint $entry, the Dockerfile says $want_entry"
  [ "$(jq -c '.config.Cmd // []' "$config")" = '[]' ] && ok "no cmd" || fail "cmd $(jq -c '.config.Cmd' "$config"), the Dockerfile sets none"
  [ "$(jq -r '.os + "/" + .architecture' "$config")" = linux/amd64 ] && ok "platform linux/amd64" || fail "platform $(jq -r '.os + "/" + .architecture' "$config")"

  # The files: every layer's listing (path, mode, owner), later layers last.
  local listing=$work/listing
  : >"$listing"
  for layer in $(jq -r '.layers[].digest' "$manifest"); do
    tar -tvzf "$(blob "$layer")" | awk '{ p = $6; sub(/^\.\//, "/", p); sub(/^([^\/])/, "/&", p); print $1, $2, p }' >>"$listing"
  done
  has() { # has PATH [MODE-REGEX]: PATH is in the image (with that mode)
    local line; line=$(awk -v p="$1" '$3 == p || $3 == p "/"' "$listing" | tail -n1)
    [ -n "$line" ] && { [ -z "${2:-}" ] || [[ ${line%% *} =~ $2 ]]; }
  }
  has "$want_bin" '^-rwxr-xr-x$' && ok "$want_bin (0755, the Dockerfile's COPY destination)" || fail "$want_bin missing or not 0755: $(grep -F " $want_bin" "$listing" || true)"
  [ "$entry" = "[\"$want_bin\"]" ] || fail "the entrypoint $entry is not the copied binary $want_bin"
  local lib
  if [ -x "$BINARY" ]; then
    for lib in $(linked_libs "$BINARY"); do
      has "$lib" && ok "linked library $lib" || fail "the binary links $lib, which is not in the image"
    done
  else
    fail "no $BINARY to read the linked libraries from (hack/image.sh build)"
  fi
  has /etc/ssl/certs/ca-certificates.crt && ok "CA certificates" || fail "/etc/ssl/certs/ca-certificates.crt missing"
  grep -q '^nonroot:x:65532:65532:' <(tar -xzOf "$(blob "$(jq -r '.layers[-1].digest' "$manifest")")" ./etc/passwd etc/passwd 2>/dev/null) \
    && ok "/etc/passwd has nonroot (65532)" || fail "/etc/passwd lacks nonroot:x:65532:65532"
  has /home/nonroot '^drwx------$' && ok "/home/nonroot" || fail "/home/nonroot missing"
  has /tmp '^drwxrwxrwt$' && ok "/tmp (1777)" || fail "/tmp missing or not 1777"
  [ "$fails" = 0 ] || { echo "hack/image.sh verify: $fails mismatch(es) between $archive and the Dockerfile"; exit 1; }
  echo "hack/image.sh verify: $archive matches the Dockerfile's final stage"
}

case "${1:-}" in
  build) build_chaoslab ;;
  pause) pause_archive ;;
  archives) pause_archive; build_chaoslab ;;
  verify) verify "${2:-}" ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac

# syntax=docker/dockerfile:1
# The chaoslab image: one static-ish binary on distroless, running as the nonroot user (65532).
#   docker build -t chaoslab:0.1.0 .
#   kind load docker-image chaoslab:0.1.0
# See docs/install.md. The chart's securityContext (runAsUser 65532, read-only root filesystem,
# no capabilities) matches this image.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build reads: the workspace manifest, the lockfile, the crates, and the files the
# binary crate's manifest names (its tests and the benchmark's server) or embeds (the lab's tour).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY tests ./tests
COPY bench/servers ./bench/servers
COPY examples/lab ./examples/lab
# Cache mounts keep the registry and target dir between builds (BuildKit). The target dir is a
# cache mount, so the binary is copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin chaoslab \
    && install -D -m 0755 target/release/chaoslab /out/chaoslab

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/chaoslab /usr/local/bin/chaoslab
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/chaoslab"]

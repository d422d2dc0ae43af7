# chaoslab — developer entry points. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
TOOLS_BIN := $(shell bash hack/tools.sh 2>/dev/null || echo /nonexistent)
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: test fmt-check clippy unit crds crd-check helm-check build

test: fmt-check clippy unit helm-check
	@echo "make test: all checks passed"

build:
	$(CARGO) build --release --locked

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets --locked -- -D warnings

# Unit, mocked-API and schema tests, including the CRD drift check (tests/schema.rs).
unit:
	$(CARGO) test --locked

# Regenerate crds/ and the chart's copy from the Rust types.
crds:
	$(CARGO) run --quiet --locked -- crd --out-dir crds
	$(CARGO) run --quiet --locked -- crd --out-dir charts/chaoslab/crds

helm-check:
	bash hack/helm-check.sh

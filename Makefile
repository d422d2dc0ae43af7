# chaoslab — developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
CHAOSLAB_CACHE ?= $(HOME)/.cache/chaoslab
export CHAOSLAB_CACHE
# Pinned tools (helm) built by hack/tools.sh live here.
export PATH := $(CHAOSLAB_CACHE)/bin:$(PATH)

.PHONY: test tools fmt-check clippy unit crds helm-check build operator e2e demo lab install image image-verify real-node-check real-node-suite

## Everything CI checks: formatting, lints, unit + mocked-API + schema + chart tests (with the
## CRD drift check), helm lint/template, the e2e suite on the local cluster, then the chart on a
## real node (kubelet + containerd: the operator and the lab app as real pods).
test: tools fmt-check clippy unit helm-check e2e real-node-check
	@echo "make test: all checks passed"
	@cat target/test-output.txt target/e2e-output.txt | awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}'

## Install the Debian packages (idempotent), then build or reuse the pinned tools (helm;
## Kubernetes' parts) in $(CHAOSLAB_CACHE).
tools:
	bash hack/deps.sh
	bash hack/tools.sh >/dev/null
	bash hack/k8s/build.sh >/dev/null

build:
	$(CARGO) build --release --locked

## Install chaoslab into $(PREFIX)/bin, and as kubectl-chaoslab so `kubectl chaoslab ...` works.
PREFIX ?= $(HOME)/.local
install: build
	install -D -m 0755 target/release/chaoslab $(PREFIX)/bin/chaoslab
	ln -sf chaoslab $(PREFIX)/bin/kubectl-chaoslab

## The first thing to run: the lab app on loopback, the tour drill, its verdict and its report
## (target/lab-report/report.html). No cluster needed.
lab:
	bash hack/deps.sh
	$(CARGO) build --release --locked
	./target/release/chaoslab lab --out target/lab-report

## The operator's job on this machine: a local cluster, the operator, examples/podkill.yaml, the verdict.
demo: tools
	bash hack/demo.sh

## Run the operator against the current kubeconfig context, without leader election.
operator:
	$(CARGO) run --release --locked -- operator --leader-election=false

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets --features chaoslab/e2e --locked -- -D warnings

unit:
	@mkdir -p target
	set -o pipefail; $(CARGO) test --workspace --locked 2>&1 | tee target/test-output.txt

## Regenerate crds/ and the chart's copy from the Rust types.
crds:
	$(CARGO) run --quiet --locked -- crd --out-dir crds
	$(CARGO) run --quiet --locked -- crd --out-dir charts/chaoslab/crds

helm-check: tools
	bash hack/helm-check.sh

## The end-to-end suite on the local cluster: build what it needs, start the cluster, run the
## tests inside its network namespace, and stop the cluster whatever happened.
e2e: tools
	$(CARGO) build --locked -p chaoslab --features e2e --tests --bins
	bash hack/cluster up
	set -o pipefail; eval "$$(bash hack/cluster env)"; \
	  status=0; bash hack/cluster exec -- env KUBECONFIG="$$KUBECONFIG" CHAOSLAB_K8S_BIN="$$CHAOSLAB_K8S_BIN" \
	    CHAOSLAB_CLUSTER_DIR="$$CHAOSLAB_CLUSTER_DIR" CHAOSLAB_CACHE="$(CHAOSLAB_CACHE)" PATH="$(PATH)" HOME="$(HOME)" \
	    $(CARGO) test --locked --offline -p chaoslab --features e2e --test e2e -- --skip realnode:: --test-threads=1 2>&1 | tee target/e2e-output.txt || status=$$?; \
	  rm -rf target/e2e-logs; cp -r "$$CHAOSLAB_CLUSTER_DIR/logs" target/e2e-logs 2>/dev/null || true; \
	  bash hack/cluster down; exit $$status

## The chaoslab image without Docker: the release binary in an OCI archive laid out like the
## Dockerfile's final stage (target/image/chaoslab-<appVersion>.oci.tar), checked against it.
image:
	bash hack/deps.sh
	bash hack/image.sh build

## Hold the built image's config and files to the Dockerfile (exits non-zero on a mismatch).
image-verify:
	bash hack/image.sh verify

## The chart on a real node (docs/testing.md, "The real node"): hack/cluster up --real-node
## (containerd, kubelet, kube-proxy, CNI, CoreDNS in the cluster's namespace), helm install with
## the demo and no other values, the operator's and the demo's checks, load from a pod through
## CoreDNS and a ClusterIP, a PodKill; then down, whatever happened. Fails loudly on any step.
real-node-check:
	bash hack/deps.sh
	bash hack/tools.sh >/dev/null
	bash hack/k8s/build.sh all >/dev/null
	bash hack/real-node-check.sh

## The real-node suite (tests/e2e/realnode: every kind judged with real traffic, the lessons from
## their files): the check above with the cluster kept, the suite inside the cluster's namespace,
## then down, whatever happened. About 17 minutes; not yet a step of `make test` (docs/testing.md).
real-node-suite:
	bash hack/deps.sh
	bash hack/tools.sh >/dev/null
	bash hack/k8s/build.sh all >/dev/null
	$(CARGO) build --locked -p chaoslab --features e2e --tests --bins
	@mkdir -p target
	set -o pipefail; status=0; start=$$(date +%s); \
	  KEEP=1 bash hack/real-node-check.sh || status=$$?; \
	  if [ $$status = 0 ]; then \
	    eval "$$(bash hack/cluster env)"; \
	    bash hack/cluster exec -- env KUBECONFIG="$$KUBECONFIG" CHAOSLAB_K8S_BIN="$$CHAOSLAB_K8S_BIN" \
	      CHAOSLAB_CLUSTER_DIR="$$CHAOSLAB_CLUSTER_DIR" CHAOSLAB_NODE_NAME="$$CHAOSLAB_NODE_NAME" \
	      CHAOSLAB_CACHE="$(CHAOSLAB_CACHE)" PATH="$(PATH)" HOME="$(HOME)" \
	      $(CARGO) test --locked --offline -p chaoslab --features e2e --test e2e realnode:: -- --test-threads=1 --nocapture 2>&1 \
	      | tee target/realnode-output.txt || status=$$?; \
	  fi; \
	  bash hack/cluster down || status=1; \
	  echo "real-node check and suite: $$(( $$(date +%s) - start )) s"; exit $$status

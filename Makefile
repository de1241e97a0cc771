# node-agent-webhook: kubebuilder-style targets. `make help` lists them.
SHELL := /usr/bin/env bash
CARGO ?= cargo
IMG ?= node-agent-webhook:latest
OVERLAY ?= self-signed
BIN := target/debug/node-agent-webhook

.PHONY: help build test unit lint fmt demo run certs manifests validate-manifests docker-build image release-pgo deploy undeploy e2e e2e-node e2e-kind controlplane bench bench-e2e fuzz soak

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

build: ## Build the binary (debug)
	$(CARGO) build --locked

test: ## Run every test: unit, vectors, integration (real TLS server), manifests, end to end (real kube-apiserver; a real node)
	@# kubectl comes from the control-plane build, so every step uses the same release.
	PATH="$$(hack/controlplane/build.sh):$$PATH" $(MAKE) --no-print-directory unit validate-manifests e2e e2e-velero helm-test
	@# The real node's suite, the faults under load included (about 6 of its minutes).
	$(MAKE) --no-print-directory e2e-node

unit: ## The quick loop: unit, vector and integration tests (no control plane)
	$(CARGO) test --locked --all-targets

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --test e2e --test e2e_node -- -D warnings
	@# The fuzz crate's entry points (their bodies, fuzz/bodies, are linted as tests/fuzz_seeds.rs's modules).
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check

fmt: ## Format the code
	$(CARGO) fmt --all

demo: build ## Local demo, no cluster needed: the server answers real reviews
	hack/demo.sh

run: build ## Run the server locally with certs/ (generated if missing) and a config file (CONFIG=path)
	@[ -s certs/serving.pem ] || OUT_DIR=certs bash certs/generate.sh
	$(BIN) serve --tls-cert certs/serving.pem --tls-key certs/serving.key --config-file $${CONFIG:-hack/demo-config.json} --log-format text

certs: ## Generate a CA and serving certificate into certs/ (git-ignored)
	OUT_DIR=certs bash certs/generate.sh

manifests: ## Render every overlay into _out/manifests/
	hack/render-manifests.sh

validate-manifests: ## Render and validate every overlay against the Kubernetes schema
	hack/validate-manifests.sh

docker-build: ## Build the container image (needs Docker with BuildKit)
	@# cargo pkgid ends in #VERSION or, when the directory is not named for the crate, #NAME@VERSION.
	DOCKER_BUILDKIT=1 docker build --build-arg VERSION=$$(cargo pkgid | sed 's/.*[#@]//') \
	  --build-arg VCS_REF=$$(git rev-parse HEAD) --build-arg BUILD_DATE=$$(date -u +%Y-%m-%dT%H:%M:%SZ) -t $(IMG) .

release-pgo: ## The shipped release build: profile-guided (instrumented build, ~10 s of training, merged profile in _out/pgo/), into target/release
	nice -n 10 hack/pgo/build.sh

image: ## The Dockerfile's image without Docker: release build, OCI archive in _out/image/ (IMG names it), read back by go-containerregistry and containerd
	IMG=$(IMG) hack/image/build.sh

deploy: ## kubectl apply -k manifests/overlays/$(OVERLAY)
	@if [ "$(OVERLAY)" = self-signed ] && [ ! -s certs/serving.pem ]; then OUT_DIR=certs bash certs/generate.sh; fi
	kubectl apply -k manifests/overlays/$(OVERLAY)

undeploy: ## kubectl delete -k manifests/overlays/$(OVERLAY)
	@if [ "$(OVERLAY)" = self-signed ] && [ ! -s certs/serving.pem ]; then OUT_DIR=certs bash certs/generate.sh; fi
	kubectl delete -k manifests/overlays/$(OVERLAY) --ignore-not-found

e2e: ## End to end on a real kube-apiserver + etcd built from Go modules, on loopback (KUBE_VERSION=v1.34.4 for another release)
	hack/e2e/run.sh

e2e-node: ## End to end on a real node: kubelet, containerd, kube-proxy in namespaces of their own, and the faults under load (root; E2E_NODE_ARGS='--skip faults::' leaves the faults out)
	hack/node/e2e.sh $(E2E_NODE_ARGS)

controlplane: ## Build (or reuse) kube-apiserver, etcd and kubectl for the e2e suite
	hack/controlplane/build.sh

e2e-kind: ## The kind recipe, for machines with Docker and kind (not run by make test)
	IMG=$(IMG) hack/e2e-kind.sh

bench: ## Throughput and latency against a minimal hyper+rustls ceiling (release, ~17 min; see bench/RESULTS.md)
	bench/run.sh

bench-e2e: ## Pod creation, ConfigMap writes and dry-run creates through the real kube-apiserver: ours vs no webhook vs a no-op (~12 min; see bench/RESULTS.md)
	bench/e2e/run.sh

.PHONY: bench-growth
bench-growth: ## What grows with the cluster: RSS, watch CPU and /mutate p99 at 100 nodes, 2,000 StorageClasses and PriorityClasses, a 500-pod burst, 5,000 nodes (~2 min; see bench/RESULTS.md)
	bench/growth.sh

fuzz: ## cargo-fuzz every target for FUZZ_SECONDS (default 60) each
	fuzz/run.sh

soak: ## Steady load for SOAK_DURATION seconds (default 300) with certificate and config rotation
	bench/soak.sh

# --- Helm chart (charts/node-agent-webhook; helm is built from hack/helm/go.mod, cached) --------
.PHONY: helm-lint helm-test helm-package

helm-lint: ## helm lint --strict the chart in every certificate mode
	hack/helm/test.sh lint

helm-test: ## The Helm chart: lint, strict schema validation (1.30, 1.37), drift against kustomize, and install/upgrade/uninstall on the real API server
	hack/helm/test.sh
	hack/helm/e2e.sh

helm-package: helm-lint ## Build the chart archive into _out/charts/
	@helm=$$(hack/helm/build.sh | tail -n 1) && mkdir -p _out/charts && $$helm package charts/node-agent-webhook --destination _out/charts

# --- The real Velero node-agent (built from Velero's Go module, hack/velero/build.sh, cached) -----
.PHONY: e2e-velero judge

e2e-velero: ## node-agent itself creates the data-mover pods our webhook mutates (VELERO_VERSION=v1.18.3|v1.17.2|v1.16.2|all)
	hack/velero/e2e.sh

judge: ## node-agent of each version judges every example and generated ConfigMap (~15 min a version; docs/velero-judge.md)
	hack/velero/judge.sh

# --- Velero's ConfigMap key trees, per release (hack/velero/types, from Velero's Go module) --------
.PHONY: velero-types

velero-types: ## Regenerate testdata/velero-types/<tag>.json for every served Velero release (FORCE=1 rewrites existing ones)
	hack/velero/types/generate.sh

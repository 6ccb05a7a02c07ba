# mountwatchd — build, test, lint, bench.
# Integration tests mount for real: run `make test` as root. They run in a
# private mount namespace (internal/testenv) and leave nothing on the host.

GO        ?= go
PKG       := github.com/mountwatchd/mountwatchd
# The version: git describe of the latest v* tag (a release is `git tag
# v0.1.0`); before any tag, the same shape as if v0.0.0 were the first
# commit (v0.0.0-<commits>-g<hash>), which sorts below v0.1.0 for dpkg and
# rpm and is a valid image tag. A plain `go build` reads the module's build
# info instead (cmd/mountwatchd/version.go).
VERSION   ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || \
	echo v0.0.0-$$(git rev-list --count HEAD 2>/dev/null || echo 0)-g$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit's time, not the clock's: the same commit builds the same bytes
# (the image's digests depend on it).
BUILD_DATE ?= $(shell TZ=UTC git log -1 --date=format-local:%Y%m%d-%H:%M:%S --format=%cd 2>/dev/null || date -u +%Y%m%d-%H:%M:%S)
LDFLAGS   := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null) \
	-X github.com/prometheus/common/version.BuildDate=$(BUILD_DATE)

.PHONY: all build deb rpm image manifests tools test check vet fmt tidy lint cyclo filesize shellcheck bench bench-scale once clean fuzz soak e2e kube-bins

all: check test build

# mountwatchd-kube, the process that talks to the Kubernetes API server
# when a --kube.* switch is on, is built beside it: the daemon looks for it
# in its own directory.
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o mountwatchd ./cmd/mountwatchd
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o mountwatchd-kube ./cmd/mountwatchd-kube

# The Debian package: a static binary (CGO_ENABLED=0, so it depends on
# nothing), the systemd unit, /etc/default/mountwatchd and the docs, built
# with dpkg-deb alone (packaging/deb/build.sh). Writes
# $(DEBDIR)/mountwatchd_<version>_<arch>.deb.
DEBDIR    ?= dist
GOARCH    ?= $(shell $(GO) env GOARCH)

deb:
	@mkdir -p $(DEBDIR)/build
	CGO_ENABLED=0 GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DEBDIR)/build/mountwatchd ./cmd/mountwatchd
	CGO_ENABLED=0 GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DEBDIR)/build/mountwatchd-kube ./cmd/mountwatchd-kube
	packaging/deb/build.sh $(DEBDIR)/build/mountwatchd '$(VERSION)' $(GOARCH) $(DEBDIR)

# The RPM, from the same files as the .deb, built by nfpm (make tools)
# from packaging/rpm/nfpm.yaml. Writes $(RPMDIR)/mountwatchd-<version>-1.<arch>.rpm.
# An RPM version has no '-': v1.2.3-4-gabc becomes 1.2.3+4+gabc, as in the
# .deb, which every rpm sorts after 1.2.3 and before 1.2.4 ('^' would say
# so too, but rpm before 4.15, as in RHEL 8, cannot read it).
RPMDIR      ?= dist
RPM_VERSION ?= $(shell echo '$(VERSION)' | sed -e 's/^v//' -e 's/[-_]/+/g')

rpm:
	@mkdir -p $(RPMDIR)/build
	CGO_ENABLED=0 GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(RPMDIR)/build/mountwatchd ./cmd/mountwatchd
	CGO_ENABLED=0 GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(RPMDIR)/build/mountwatchd-kube ./cmd/mountwatchd-kube
	MOUNTWATCHD_BINARY=$(abspath $(RPMDIR))/build/mountwatchd MOUNTWATCHD_VERSION='$(RPM_VERSION)' GOARCH=$(GOARCH) \
		$(NFPM) package --config packaging/rpm/nfpm.yaml --packager rpm --target $(RPMDIR)/

# The container image, built offline (packaging/image: go-containerregistry
# onto an empty base, no registry, no Docker daemon): one static binary per
# platform, an OCI image index, written as an OCI archive to $(IMAGE_OUT).
# Load it with `ctr -n k8s.io image import`, or push it with
# `skopeo copy oci-archive:$(IMAGE_OUT) docker://REGISTRY/mountwatchd:TAG`.
IMAGE           ?= ghcr.io/mountwatchd/mountwatchd
IMAGE_TAG       ?= $(VERSION)
IMAGE_OUT       ?= dist/mountwatchd-image.tar
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
IMAGE_BUILD     ?= $(dir $(IMAGE_OUT))build
CREATED         ?= $(shell git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)

image:
	@set -e; bins=; for p in $(IMAGE_PLATFORMS); do \
		arch=$${p#linux/}; mkdir -p $(IMAGE_BUILD)/linux-$$arch; \
		echo "build $$p"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMAGE_BUILD)/linux-$$arch/mountwatchd ./cmd/mountwatchd; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(IMAGE_BUILD)/linux-$$arch/mountwatchd-kube ./cmd/mountwatchd-kube; \
		bins="$$bins -binary $$p=$(abspath $(IMAGE_BUILD))/linux-$$arch/mountwatchd -helper $$p=$(abspath $(IMAGE_BUILD))/linux-$$arch/mountwatchd-kube"; \
	done; \
	cd packaging/image && $(GO) run . -out $(abspath $(IMAGE_OUT)) -ref $(IMAGE):$(IMAGE_TAG) \
		-version '$(VERSION)' -revision '$(REVISION)' -created '$(CREATED)' \
		-license $(abspath LICENSE) -npd $(abspath packaging/kubernetes/npd-custom-plugin.json) $$bins
	@echo "wrote $(IMAGE_OUT) ($(IMAGE):$(IMAGE_TAG))"

# The tools packaging needs, at pinned versions (CI installs them with
# `make tools`): helm renders the chart (make manifests, the tests), nfpm
# builds the .rpm (make rpm). Both are Go modules, installed with go install
# into $(go env GOPATH)/bin, so neither is in mountwatchd's go.mod.
HELM_VERSION ?= v3.22.0
NFPM_VERSION ?= v2.45.2
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= golangci-lint
SHELLCHECK    ?= shellcheck
HELM         ?= helm
NFPM         ?= nfpm

tools:
	$(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	$(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

# The plain manifests are the Helm chart rendered (packaging/kubernetes/
# generate.sh); the chart carries copies of the alerting rules, the
# dashboard and the NPD plugin config, since a chart cannot read files
# outside itself. go test ./packaging fails when any of it is stale.
manifests:
	cp packaging/prometheus/mountwatchd.rules.yml packaging/prometheus/mountwatchd-dashboard.json \
		packaging/kubernetes/npd-custom-plugin.json packaging/helm/mountwatchd/files/
	HELM=$(HELM) packaging/kubernetes/generate.sh .

# One-shot check of this machine's mount table.
once: build
	./mountwatchd --once

# The whole suite: static checks, then every test with the race detector.
# As root every integration test runs; in CI (CI=true) a test whose
# requirement is missing fails instead of skipping.
test: check
	$(GO) test -race -count=1 ./...
	$(MAKE) e2e

# The end-to-end suite (internal/e2e, build tag e2e, as root): the chart on a
# real one-node Kubernetes (kubelet, kube-apiserver, controller-manager and
# scheduler $(KUBE_VERSION) built from the Go module proxy by
# internal/testenv/kube/build/build.sh into KUBE_BIN, Debian's etcd and
# containerd), with the image built for this machine's platform only.
# Cold: about 10 minutes of building on 2 cores; warm: seconds.
KUBE_VERSION ?= v1.34.4
KUBE_BIN     ?= $(HOME)/.cache/mountwatchd-e2e/kube-$(KUBE_VERSION)
E2E_IMAGE    ?= dist/e2e/mountwatchd-image.tar

kube-bins:
	internal/testenv/kube/build/build.sh $(KUBE_BIN)

e2e: kube-bins
	$(MAKE) image IMAGE=localhost/mountwatchd IMAGE_TAG=e2e IMAGE_PLATFORMS=linux/$(GOARCH) IMAGE_OUT=$(E2E_IMAGE) IMAGE_BUILD=dist/e2e/build
	MOUNTWATCHD_KUBE_BIN=$(KUBE_BIN) MOUNTWATCHD_E2E_IMAGE=$(abspath $(E2E_IMAGE)) \
		$(GO) test -race -count=1 -tags e2e -timeout 30m -v ./internal/e2e/

check: fmt vet tidy lint cyclo filesize shellcheck

# golangci-lint with the repo's .golangci.yml (errcheck, errorlint,
# staticcheck, unused, revive's exported rule: doc comments start with the
# name they document, ...); shellcheck on every shell script we ship or run.
lint:
	$(GOLANGCI_LINT) run ./...
	cd packaging/image && $(GOLANGCI_LINT) run ./...

# No function outside the tests with a cyclomatic complexity over 20, and
# no file outside the tests over 450 lines: each small enough to read at once.
cyclo:
	$(GO) run github.com/fzipp/gocyclo/cmd/gocyclo -over 20 -ignore '_test\.go$$' .

filesize:
	@big=$$(git ls-files '*.go' ':!:*_test.go' | xargs wc -l | awk '$$2 != "total" && $$1 > 450'); \
	if [ -n "$$big" ]; then echo "over 450 lines:"; echo "$$big"; exit 1; fi

SHELL_SCRIPTS := .ci/run .ci/fuzz $(shell git ls-files '*.sh' 2>/dev/null) packaging/deb/postinst packaging/deb/postrm packaging/deb/prerm
shellcheck:
	$(SHELLCHECK) $(SHELL_SCRIPTS)

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# packaging/image is a module of its own (the image builder's
# go-containerregistry stays out of mountwatchd's go.mod): vet and tidy it
# too.
vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./internal/e2e/
	cd packaging/image && $(GO) vet ./...
	cd internal/testenv/kube/build && $(GO) vet ./cmd/...

tidy:
	@for m in . packaging/image; do \
		(cd $$m && $(GO) mod tidy -diff) || { echo "$$m: go.mod/go.sum not tidy: run go mod tidy there and commit"; exit 1; }; \
	done

# Fuzz every parser of outside input for FUZZTIME each (seeds: the
# captures in testdata/ and testdata/fuzz/<target>), minimizing each new
# input for at most FUZZMINIMIZETIME calls; .ci/fuzz prints each target's
# executions and fails below a floor per target or on a stall. A crash is
# written to testdata/fuzz/<target>/ by go test: commit it, it becomes a
# regression test of the plain `go test` run. 8 targets x 10s plus the
# instrumented builds: about 2 minutes.
FUZZTIME  ?= 10s
FUZZMINIMIZETIME ?= 100x

fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZMINIMIZETIME=$(FUZZMINIMIZETIME) .ci/fuzz

# 30 minutes of mount churn (thousands of tmpfs, bind and FUSE mounts made
# and removed under kubelet paths) against the daemon with a real Prometheus
# scraping it; prints RSS, goroutines and descriptors at start and end. As
# root; not part of make test (which churns for one minute).
SOAK      ?= 30m
soak:
	MOUNTWATCHD_CHURN=$(SOAK) $(GO) test -count=1 -timeout 60m -run '^TestDaemonMountChurn$$' -v ./cmd/mountwatchd

# Benchmarks print figures with a baseline measured in the same run; they
# never pass or fail on time. First each package's benchmarks, then the
# node-scale table of bench/ (as root: real mount tables in a private mount
# namespace; BENCHMARKS.md has the latest). BENCH_SIZES are the table
# sizes, BENCH_REPS the interleaved repetitions per size (medians), and
# BENCH_IDLE the daemon's idle window at 10,000 mounts: 15s by default to
# keep make bench short; the issue's figure is make bench BENCH_IDLE=60s.
# BENCH_OUT also writes the table to a file.
BENCH_SIZES ?= 1000,10000,50000
BENCH_REPS  ?= 5
BENCH_IDLE  ?= 15s
BENCH_OUT   ?=

bench:
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/bench$$')
	$(MAKE) bench-scale

bench-scale:
	MOUNTWATCHD_BENCH_SIZES=$(BENCH_SIZES) MOUNTWATCHD_BENCH_REPS=$(BENCH_REPS) MOUNTWATCHD_BENCH_IDLE=$(BENCH_IDLE) \
	MOUNTWATCHD_BENCH_OUT=$(BENCH_OUT) $(GO) test -run '^$$' -bench NodeScale -benchtime 1x -timeout 2h ./bench/

clean:
	rm -f mountwatchd mountwatchd-kube
	rm -rf dist

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
LDFLAGS   := -s -w \
	-X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null) \
	-X github.com/prometheus/common/version.BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)

.PHONY: all build deb test check vet fmt tidy bench once clean

all: check test build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o mountwatchd ./cmd/mountwatchd

# The Debian package: a static binary (CGO_ENABLED=0, so it depends on
# nothing), the systemd unit, /etc/default/mountwatchd and the docs, built
# with dpkg-deb alone (packaging/deb/build.sh). Writes
# $(DEBDIR)/mountwatchd_<version>_<arch>.deb.
DEBDIR    ?= dist
GOARCH    ?= $(shell $(GO) env GOARCH)

deb:
	@mkdir -p $(DEBDIR)/build
	CGO_ENABLED=0 GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DEBDIR)/build/mountwatchd ./cmd/mountwatchd
	packaging/deb/build.sh $(DEBDIR)/build/mountwatchd '$(VERSION)' $(GOARCH) $(DEBDIR)

# One-shot check of this machine's mount table.
once: build
	./mountwatchd --once

# The whole suite: static checks, then every test with the race detector.
# As root every integration test runs; in CI (CI=true) a test whose
# requirement is missing fails instead of skipping.
test: check
	$(GO) test -race -count=1 ./...

check: fmt vet tidy

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

tidy:
	@cp go.mod /tmp/mountwatchd-go.mod.bak; cp go.sum /tmp/mountwatchd-go.sum.bak; \
	$(GO) mod tidy; \
	if ! cmp -s go.mod /tmp/mountwatchd-go.mod.bak || ! cmp -s go.sum /tmp/mountwatchd-go.sum.bak; then \
		echo "go.mod/go.sum not tidy: run go mod tidy and commit"; exit 1; fi

# Benchmarks print figures with a baseline measured in the same run.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -f mountwatchd
	rm -rf dist

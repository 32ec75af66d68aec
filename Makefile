# corral: a systemd-native worker pool.
#
#   make run     build the .deb and run the demo pool in a throwaway real systemd
#   make test    every test: static checks, unit tests (-race), short fuzzing,
#                lintian, the integration suite in a real systemd, and the
#                VM tier (real cgroup limits, in QEMU)
#   make vmtest  the VM tier alone
#   make bench   the benchmarks (docs/benchmarks.md)
#   make bench-peers  corral against Node's cluster module and pm2 (docs/benchmarks.md)
#   make dashboard-picture  draws docs/grafana/corral.png from a real run
#   make steering-picture   draws docs/steering.png from the steering program's instructions
#
# Everything runs as root on Debian 12; `make deps` installs what is missing.

SHELL := /bin/bash
GO ?= go
# Where `make deps` installs the Go tools it pins (test/install-deps.sh): $GOBIN,
# else the first GOPATH entry's bin/. They run from there by full path, so another
# version elsewhere on PATH is never used.
GOBIN := $(or $(shell $(GO) env GOBIN),$(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin)
STATICCHECK ?= $(GOBIN)/staticcheck

include packaging/deb.mk

FUZZTIME ?= 5s
INTEGRATION_TIMEOUT ?= 30m
VM_TIMEOUT ?= 40m

.PHONY: all deps build check unit fuzz integration vmtest test run bench bench-peers dashboard-picture steering-picture clean

all: build

deps:
	@bash test/install-deps.sh

build:
	$(GO) build ./...

check: deps
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./test/...
	$(GO) vet -tags vm ./test/vm
	$(GO) vet -tags vmguest ./test/vm/guest
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags integration ./test/...
	$(STATICCHECK) -tags vm ./test/vm
	$(STATICCHECK) -tags vmguest ./test/vm/guest

unit:
	$(GO) test -race -count=1 ./...

# A short run of every fuzz target; `make fuzz FUZZTIME=10m` for a long one.
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) test/fuzz.sh

# The upgrade test installs a second build with a higher version over the first.
NEXT_VERSION := $(VERSION).1
NEXT_DEB := dist/corral_$(NEXT_VERSION)_amd64.deb

integration: deps
	$(MAKE) deb VERSION=$(NEXT_VERSION)
	$(MAKE) deb
	CGO_ENABLED=0 $(GO) build -o build/corral-hostile ./test/cmd/corral-hostile
	CORRAL_DEB=$(CURDIR)/$(DEB) CORRAL_DEB_NEXT=$(CURDIR)/$(NEXT_DEB) CORRAL_HOSTILE=$(CURDIR)/build/corral-hostile \
		$(GO) test -tags integration -count=1 -v -timeout $(INTEGRATION_TIMEOUT) ./test/...

# The VM tier (test/vm): the checks that need the kernel to enforce cgroup
# limits, in one boot of a QEMU machine. CORRAL_VM_RUN=TestCPUQuota runs some.
vmtest: deps
	$(MAKE) deb
	CORRAL_DEB=$(CURDIR)/$(DEB) $(GO) test -tags vm -count=1 -v -timeout $(VM_TIMEOUT) ./test/vm

test: check unit fuzz lintian integration vmtest

run: deps deb
	$(GO) build -o build/corral-sandbox ./test/cmd/corral-sandbox
	@# Not `go run`, which turns the clean exit after Ctrl-C into a make error.
	build/corral-sandbox -deb $(DEB)

bench: deps
	$(MAKE) deb VERSION=$(NEXT_VERSION)
	$(MAKE) deb
	$(GO) run ./test/bench -deb $(DEB) -deb-next $(NEXT_DEB)

# Writes docs/bench-peers.md, docs/bench-peers.png and the results section of
# docs/benchmarks.md. Flags: BENCH_PEERS_FLAGS="-rounds 5 -d 20s".
bench-peers: deps
	$(MAKE) deb
	$(GO) run ./test/bench/peers -deb $(DEB) -out docs -doc docs/benchmarks.md $(BENCH_PEERS_FLAGS)

# Draws docs/grafana/corral.png: the Grafana dashboard's panels from a real run
# of about 6 minutes (docs/grafana/README.md). Flags: DASHBOARD_PICTURE_FLAGS="-d 5m".
dashboard-picture: deps
	$(MAKE) deb
	$(GO) run ./test/cmd/dashboard-picture -deb $(DEB) -dashboard docs/grafana/corral.json -out docs/grafana/corral.png $(DASHBOARD_PICTURE_FLAGS)

# Draws docs/steering.png: the control flow of the steering program, from the
# instructions corrald loads (internal/steer), with Graphviz's dot. Needs no
# root once dot is there; it installs Graphviz if root, as `make deps` does.
steering-picture:
	@if ! command -v dot >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "steering-picture: FAILED: Graphviz's dot is not on PATH" >&2; \
			echo "steering-picture: try: sudo apt-get install graphviz (or sudo make deps), then make steering-picture again" >&2; \
			exit 1; \
		fi; \
		echo "steering-picture: apt-get install graphviz (it draws the picture with dot)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz >/dev/null || { \
			echo "steering-picture: FAILED: apt-get install graphviz" >&2; \
			echo "steering-picture: try: apt-get update, then make steering-picture again" >&2; \
			exit 1; }; \
	fi
	$(GO) run ./test/cmd/steering-picture -out docs/steering.png

clean: deb-clean

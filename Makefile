# docker-worker: see README.md. `make help` lists the targets.
GO      ?= go
BIN     := bin/docker-worker
PKGS    := ./...
# Tests that need a real dockerd fail instead of skipping when CI is set.
TESTFLAGS ?= -race -count=1 -timeout 20m
# How long `make chaos` fuzzes each target after its chaos run.
CHAOS_FUZZTIME ?= 30s
# How long `make fuzz` runs each fuzz target (longer runs: make fuzz FUZZTIME=5m).
FUZZTIME ?= 3s

.PHONY: help build test test-unit setup lint fmt demo clean bench chaos fuzz deploy-check ui

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ui ## build bin/docker-worker (with the web page's terminal when npm is there)
	$(GO) build -o $(BIN) ./cmd/docker-worker

ui: ## embed the web page's terminal emulator (npm ci in ui/, copied into the UI's assets; skipped without npm)
	bash ui/build.sh

setup: ## install and start what the tests need (dockerd, test image, registry)
	bash test/setup-env.sh

test: setup lint deploy-check ## set up the test environment, lint, and run every test (Docker tests included), then the fuzz targets
	$(GO) test $(TESTFLAGS) $(PKGS)
	$(MAKE) fuzz

test-unit: ## run the tests that need no Docker daemon
	$(GO) test -short $(TESTFLAGS) $(PKGS)

deploy-check: ## shellcheck deploy/, packer fmt + validate (via deploy/bin/build --dry-run), vagrant validate
	$(MAKE) -C deploy check

fuzz: ## run each fuzz target for FUZZTIME (default 3s)
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash test/fuzz.sh

lint: ## gofmt check and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

demo: build setup ## run the embedded queue and a worker, submit a sample task, print its log and artifacts
	bash test/demo.sh

clean: ## remove build output
	rm -rf bin

# Where make dist writes the release tarballs; VERSION overrides the computed version.
DISTDIR ?= dist

.PHONY: dist
dist: ## release tarballs for linux/amd64 and linux/arm64 and their SHA256SUMS in DISTDIR (default dist/)
	GO=$(GO) VERSION=$(VERSION) bash test/dist.sh $(DISTDIR)

bench: setup ## measure the worker against bare docker; prints a table, writes bench-results.json
	$(GO) run ./test/bench $(BENCHFLAGS)

chaos: setup ## SIGKILL a worker at random while faults hit its queue; prints a table of what was lost (must be zeros); then longer fuzzing
	$(GO) run ./test/chaos -n 50 $(CHAOSFLAGS)
	$(MAKE) fuzz FUZZTIME=$(CHAOS_FUZZTIME)

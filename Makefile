# nixlos — two commands set everything up on a fresh Debian 12 machine:
#   make demo   build installer media from examples/nix-los and install it in a VM
#   make test   every test, VM tests included (what CI runs)
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
DEMO    ?= build/demo

.PHONY: all deps build test test-short lint fuzz bench demo clean

all: build

deps:
	@scripts/deps.sh

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/mkiso ./cmd/mkiso
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/installer ./cmd/installer

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...

# Strict: a test whose tool, kernel, firmware or privilege is missing fails
# (package internal/testenv); the report fails a package whose VM tests ran
# none. NIXLOS_SKIP_VM=1 is the only opt-out.
test: deps lint
	set -o pipefail; NIXLOS_STRICT=1 $(GO) test -json -count=1 -timeout 42m ./... | $(GO) run ./internal/tools/testreport
	@scripts/fuzz.sh

# Unit tests only: no VM boots, no loop devices needing long setup.
test-short:
	set -o pipefail; $(GO) test -json -short ./... | $(GO) run ./internal/tools/testreport -short

fuzz:
	FUZZTIME=$${FUZZTIME:-30s} scripts/fuzz.sh

bench: deps build
	@scripts/bench.sh

demo: deps build
	@scripts/demo.sh $(DEMO)

clean:
	rm -rf bin build

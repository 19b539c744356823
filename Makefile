# hawser: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
GOLANGCI_VERSION := v2.15.0
FUZZTIME ?= 30s
BIN := $(CURDIR)/bin

.PHONY: all test test-lib test-bench-module test-drivers stress bench bench-raft bench-go fuzz lint tidy demo clean FORCE

all: test

## test: race detector, shuffled order, every benchmark once; then the bench module, briefly;
## then the drivers module against SQLite and a throwaway PostgreSQL (scripts/test-drivers.sh
## installs Debian's postgresql if missing, starts it on 127.0.0.1 as a non-root user, stops it).
test: test-lib test-bench-module test-drivers

test-lib:
	$(GO) vet ./...
	$(GO) test -race -shuffle=on -count=1 -bench=. -benchtime=1x -timeout=20m ./...
	HAWSER_TEST_DIALREAD=poller $(GO) test -race -shuffle=on -count=1 -timeout=20m ./conn/

test-bench-module:
	cd bench && $(GO) vet ./... && $(GO) build ./... && $(GO) test -race -count=1 -timeout=10m ./...

test-drivers:
	scripts/test-drivers.sh

## stress: the library's concurrency tests (conn, server, pool, fuzz, auth, client, the root package, raft) under the race
## detector, shuffled, 20 times over, and conn again with dialers on the poller; raft with
## -short (its 64 and 256 MiB snapshot tests run once in make test); not part of make test.
## STRESS_COUNT overrides 20.
STRESS_COUNT ?= 20
stress:
	$(GO) test -race -shuffle=on -count=$(STRESS_COUNT) -timeout=60m ./conn/ ./server/ ./pool/ ./fuzz/ ./auth/ ./client/ .
	HAWSER_TEST_DIALREAD=poller $(GO) test -race -shuffle=on -count=$(STRESS_COUNT) -timeout=60m ./conn/
	$(GO) test -race -shuffle=on -count=$(STRESS_COUNT) -short -timeout=60m ./raft/

## bench: hawser against grpc, arpc, net/rpc and raw TLS with the benchmark CLI: one caller
## at GOMAXPROCS 1 and 2, 256 callers and streams at 2 (72 runs, about 5.5 minutes; table on stdout,
## one line per run on stderr, JSON and plot in bench/results/).
BENCH_FLAGS ?= --duration 3s --warmup 1s --rounds 2
BENCH_IMPLS := hawser,grpc,arpc,netrpc,raw
bench: $(BIN)/hawser-bench
	mkdir -p bench/results
	$(BIN)/hawser-bench --scenario unary --impl $(BENCH_IMPLS) --size 64,1024 --conc 1 --gomaxprocs 1,2 \
	  $(BENCH_FLAGS) --json bench/results/unary-conc1.json --plot bench/results/unary-conc1.png
	$(BIN)/hawser-bench --scenario unary --impl $(BENCH_IMPLS) --size 64,1024 --conc 256 --gomaxprocs 2 \
	  $(BENCH_FLAGS) --json bench/results/unary-conc256.json --plot bench/results/unary-conc256.png
	$(BIN)/hawser-bench --scenario stream --impl hawser,grpc,raw --size 64 --conc 1,8 --gomaxprocs 2 \
	  $(BENCH_FLAGS) --json bench/results/stream.json --plot bench/results/stream.png

## bench-raft: three hashicorp/raft voters in one process over hawser's raft transport, raft's
## NetworkTransport over TLS 1.3 and over TCP, and its InmemTransport (the ceiling): applies/s,
## commit latency, CPU and allocations per apply, heartbeat RTT under load, and a 64 MiB
## InstallSnapshot (72 runs + 12 snapshots: 6.5 minutes on 2 cores; table on stdout, JSON in
## bench/results/raft.json).
RAFT_IMPLS ?= hawser,net-tls,net-tcp,inmem
bench-raft: $(BIN)/hawser-bench
	mkdir -p bench/results
	$(BIN)/hawser-bench --scenario raft --impl $(RAFT_IMPLS) --size 100,4096 --conc 1,16,64 \
	  --duration 3s --warmup 1s --rounds 3 --json bench/results/raft.json

$(BIN)/hawser-bench: FORCE
	cd bench && $(GO) build -o $(BIN)/hawser-bench ./cmd/hawser-bench

FORCE:

## bench-go: the library's Go micro-benchmarks, with allocations.
bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 -timeout=30m ./...

## fuzz: every Fuzz target for FUZZTIME each (default 30s).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s $$pkg; \
	  done; \
	done

## lint: golangci-lint at a pinned version, installed into ./bin.
lint: $(BIN)/golangci-lint
	$(BIN)/golangci-lint run ./...
	cd bench && $(BIN)/golangci-lint run ./...
	cd drivers && $(BIN)/golangci-lint run ./...

$(BIN)/golangci-lint:
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

## tidy: fails if go.mod or go.sum are not tidy.
tidy:
	$(GO) mod tidy
	cd bench && $(GO) mod tidy
	cd drivers && $(GO) mod tidy
	git diff --exit-code -- go.mod go.sum bench/go.mod bench/go.sum drivers/go.mod drivers/go.sum

## demo: an in-process server and client over TLS, with nothing to set up.
demo:
	cd bench && $(GO) run ./cmd/hawser-demo

clean:
	rm -rf $(BIN)

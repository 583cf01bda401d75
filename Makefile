# Each target that builds runs the bootstrap first, so on a fresh machine it is the whole set-up.
SWIFT ?= swift
BIN := .build/debug

.PHONY: bootstrap build demo test fuzz simulate simulate-scale bench bench-sync bench-channel bench-edge lint clean

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(SWIFT) build

## make demo: a hub and two stores on loopback play the offline-sync scenario, narrated.
demo: build
	$(BIN)/simulate demo

## make test: the whole test suite (unit, component and end-to-end against the real executables);
## the hub's tests run on SQLite and on a local PostgreSQL that scripts/postgres starts.
test: bootstrap
	$(SWIFT) build --build-tests
	scripts/fuzz 20
	scripts/postgres start >/dev/null
	LOYALTY_TEST_POSTGRES="$$(scripts/postgres url)" $(SWIFT) test --skip-build --parallel --num-workers 2

## make simulate-scale: the 1,000-store, 1,000,000-member day (one-store partners with
## partner-group feeds, 5-minute pulls, members loaded as the starting state); prints its wall time.
simulate-scale: bootstrap
	$(SWIFT) build -c release --product simulate
	.build/release/simulate run --seed 1 --stores 1000 --members 1000000 --days 1 --partners 1000 \
		--partner-groups --sync-interval-ms 300000 --preload-members

## make simulate: the standard deterministic scenario (6 stores, 300 members, one day) over 5 seeds,
## with a JSON summary and an HTML report in .build/simulate/ (opens nothing).
simulate: bootstrap
	$(SWIFT) build -c release --product simulate
	mkdir -p .build/simulate
	.build/release/simulate run --seed 1 --sweep 5 --stores 6 --members 300 --days 1 \
		--json .build/simulate/summary.json --report .build/simulate/report.html

## make fuzz: libFuzzer over the wire decoders and the channel's first flight (5 minutes).
fuzz: bootstrap
	scripts/fuzz 300

## make bench: every benchmark; writes BENCHMARKS.md and benchmarks.json from this run.
bench: bootstrap
	scripts/bench

## make bench-sync: SyncProtocol core figures (slot merges, encode/decode, 1 % delta of 1M members).
bench-sync: bootstrap
	$(SWIFT) run -c release SyncBench

## make bench-channel: bulk sync through the channel against plaintext loopback; handshakes per second.
bench-channel: bootstrap
	$(SWIFT) run -c release ChannelBench

## make bench-edge: the store node with 1M members, 8 lanes against raw SQLite group commit, p99 at 1,000/s.
bench-edge: bootstrap
	$(SWIFT) build -c release --product edge
	$(SWIFT) build -c release --product EdgeBench
	.build/release/EdgeBench

## make lint: swift-format over sources, simulations and tests.
lint:
	$(SWIFT) format lint --recursive --strict Package.swift Sources Simulations Tests Benchmarks Fuzz

clean:
	rm -rf .build

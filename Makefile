# toolgate: one place for the developer and CI commands.
# `make test` is the README's test command and what .ci/run calls.

CARGO ?= cargo

.PHONY: all fmt lint test test-rust test-e2e bench bench-compile fuzz-build fuzz purity run

all: test

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Everything CI runs: lint, unit/integration tests, purity of the pure crates,
# benches and fuzz targets compiled, then the end-to-end suites.
test:
	scripts/test.sh

test-rust:
	$(CARGO) test --workspace

purity:
	scripts/check-purity.sh

bench-compile:
	$(CARGO) bench --workspace --no-run

bench:
	$(CARGO) bench -p toolgate-policy --bench evaluate

fuzz-build:
	cd fuzz && $(CARGO) build

# Runs each fuzz target for FUZZ_SECONDS (default 60) with libFuzzer.
FUZZ_SECONDS ?= 60
fuzz: fuzz-build
	for t in policy_parser envelope; do fuzz/target/debug/$$t -max_total_time=$(FUZZ_SECONDS) || exit 1; done

run:
	$(CARGO) run --release -p toolgate -- serve

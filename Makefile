# toolgate: one place for the developer and CI commands.
# `make test` is the README's test command and what .ci/run calls.

CARGO ?= cargo

.PHONY: all check fmt lint test test-rust test-e2e bench bench-compile fuzz-build fuzz fuzz-quick fuzz-quick-build fuzz-smoke fuzz-config fuzz-config-build purity run

all: test

fmt:
	$(CARGO) fmt --all

# The inner loop (a few minutes): formatting, lints, and the Rust unit and integration
# tests. No end-to-end suites, no services: `make test` runs everything.
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

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
	$(CARGO) bench -p toolgate-detect --bench inspect

fuzz-build:
	cd fuzz && $(CARGO) build

# Runs each fuzz target for FUZZ_SECONDS (default 60) with libFuzzer, coverage-guided:
# the same SanitizerCoverage flags cargo-fuzz passes, which stable Rust accepts (only
# cargo-fuzz's address sanitizer needs nightly). --target keeps the flags off build scripts.
FUZZ_SECONDS ?= 60
FUZZ_TRIPLE ?= x86_64-unknown-linux-gnu
FUZZ_FLAGS = --cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares
fuzz: fuzz-quick fuzz-config

# The envelope, SSE and policy parsers (quick to build), instrumented for coverage.
fuzz-quick-build:
	cd fuzz && RUSTFLAGS="$(FUZZ_FLAGS)" CARGO_TARGET_DIR=target/cov $(CARGO) build --release --target $(FUZZ_TRIPLE)
	mkdir -p fuzz/corpus/policy_parser fuzz/corpus/envelope fuzz/corpus/sse fuzz/corpus/config_parser
	cp policies/*.json tests/fixtures/policies/broken/*.json fuzz/corpus/policy_parser/
	printf '\x05event: message\nid: 1\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n: keep-alive\r\n\r\n' > fuzz/corpus/sse/seed
	cp toolgate.toml fuzz/corpus/config_parser/

fuzz-quick: fuzz-quick-build
	for t in policy_parser envelope sse; do \
	  fuzz/target/cov/$(FUZZ_TRIPLE)/release/$$t fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# The test command's smoke: every target FUZZ_SECONDS, two at a time (two cores). The
# envelope, SSE and policy targets are coverage-guided; the config target runs the
# uninstrumented build (mutations without coverage feedback: its instrumented build takes
# minutes; `make fuzz-config` runs that one).
COV = fuzz/target/cov/$(FUZZ_TRIPLE)/release
fuzz-smoke: fuzz-quick-build fuzz-config-build
	( $(COV)/policy_parser fuzz/corpus/policy_parser -max_total_time=$(FUZZ_SECONDS) && \
	  $(COV)/envelope fuzz/corpus/envelope -max_total_time=$(FUZZ_SECONDS) ) > fuzz/lane-a.log 2>&1 & a=$$!; \
	( $(COV)/sse fuzz/corpus/sse -max_total_time=$(FUZZ_SECONDS) && \
	  target/debug/config_parser fuzz/corpus/config_parser -max_total_time=$(FUZZ_SECONDS) ) > fuzz/lane-b.log 2>&1 & b=$$!; \
	ok=0; wait $$a || ok=1; wait $$b || ok=1; \
	grep -h "^Done" fuzz/lane-a.log fuzz/lane-b.log; \
	if [ $$ok -ne 0 ]; then tail -n 40 fuzz/lane-a.log fuzz/lane-b.log; exit 1; fi

# The config parser (builds the whole gateway instrumented: minutes).
fuzz-config:
	cd fuzz/gateway && RUSTFLAGS="$(FUZZ_FLAGS)" CARGO_TARGET_DIR=../target/cov $(CARGO) build --release --target $(FUZZ_TRIPLE)
	mkdir -p fuzz/corpus/config_parser
	cp toolgate.toml fuzz/corpus/config_parser/
	fuzz/target/cov/$(FUZZ_TRIPLE)/release/config_parser fuzz/corpus/config_parser -max_total_time=$(FUZZ_SECONDS)

# Compiles the config parser's target without instrumentation, on the workspace's build.
fuzz-config-build:
	cd fuzz/gateway && CARGO_TARGET_DIR=../../target $(CARGO) build

run:
	$(CARGO) run --release -p toolgate -- serve

# toolgate: one place for the developer and CI commands.
# `make test` is the README's test command and what .ci/run calls.

CARGO ?= cargo

.PHONY: all fmt lint test test-rust test-e2e bench bench-compile fuzz-build fuzz fuzz-quick fuzz-config fuzz-config-build purity run

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

# Runs each fuzz target for FUZZ_SECONDS (default 60) with libFuzzer, coverage-guided:
# the same SanitizerCoverage flags cargo-fuzz passes, which stable Rust accepts (only
# cargo-fuzz's address sanitizer needs nightly). --target keeps the flags off build scripts.
FUZZ_SECONDS ?= 60
FUZZ_TRIPLE ?= x86_64-unknown-linux-gnu
FUZZ_FLAGS = --cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares
fuzz: fuzz-quick fuzz-config

# The envelope, SSE and policy parsers (quick to build): the test command's smoke.
fuzz-quick:
	cd fuzz && RUSTFLAGS="$(FUZZ_FLAGS)" CARGO_TARGET_DIR=target/cov $(CARGO) build --release --target $(FUZZ_TRIPLE)
	mkdir -p fuzz/corpus/policy_parser fuzz/corpus/envelope fuzz/corpus/sse
	cp policies/*.json tests/fixtures/policies/broken/*.json fuzz/corpus/policy_parser/
	printf '\x05event: message\nid: 1\ndata: {"jsonrpc":"2.0","id":1,"result":{}}\n\n: keep-alive\r\n\r\n' > fuzz/corpus/sse/seed
	for t in policy_parser envelope sse; do \
	  fuzz/target/cov/$(FUZZ_TRIPLE)/release/$$t fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) || exit 1; done

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

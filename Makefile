# ally — build, test, demo, bench.
#
#   make          release binaries in target/release
#   make test     every test: unit, integration, end-to-end (real processes)
#   make demo     run the demo service under ally-master and reload it under load
#   make bench    the benchmark table (release build); installs redis-server for
#                 its Redis baseline, and nginx and haproxy for its reload
#                 comparison, when missing and run as root with apt-get
#   make lint     rustfmt and clippy, as CI runs them

CARGO ?= cargo

.PHONY: all build test demo bench lint clean

all: build

build:
	$(CARGO) build --release --workspace --bins --examples

test:
	$(CARGO) build --workspace --bins --examples
	$(CARGO) test --workspace

demo: build
	scripts/demo.sh target/release

# bench runs the ally-bench the build made: `cargo run -p ally-tests` would
# build it again with other dependency features (without the examples'
# dev-dependencies), and ally-bench's own build would then replace the
# running binary, which its probes run as apps.
bench:
	$(CARGO) build --release --workspace --bins --examples
	sh scripts/bench-redis.sh
	sh scripts/bench-proxies.sh
	$(or $(CARGO_TARGET_DIR),target)/release/ally-bench

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# make fuzz: every fuzz target for FUZZ_SECONDS each (nightly and cargo-fuzz;
# see fuzz/README.md)
FUZZ_SECONDS ?= 60

.PHONY: fuzz
fuzz:
	sh fuzz/run.sh $(FUZZ_SECONDS)

clean:
	$(CARGO) clean

# ally — build, test, demo, bench.
#
#   make          release binaries in target/release
#   make test     every test: unit, integration, end-to-end (real processes)
#   make demo     run the demo service under ally-master and reload it under load
#   make bench    the benchmark table (release build); installs redis-server for
#                 its Redis baseline, and nginx and haproxy for its reload
#                 comparison, when missing and run as root with apt-get
#   make lint     rustfmt and clippy, as CI runs them
#   make deb      a .deb in target/debian/, make rpm an .rpm in target/generate-rpm/
#   make install  install without a package: PREFIX=/usr/local DESTDIR=

CARGO ?= cargo

.PHONY: all build test demo bench lint clean

all: build

build:
	$(CARGO) build --release --workspace --bins --examples

# The end-to-end tests run as root create a throwaway user and group
# (a second uid to run apps as, a group to admit); both are removed afterwards, pass or fail.
# At most TEST_THREADS tests run at once: each end-to-end test runs a master,
# services and a load of its own, and a few dozen at once on a many-core
# machine measure the machine rather than ally.
TEST_THREADS ?= 4
test:
	$(CARGO) build --workspace --bins --examples
	$(CARGO) test --workspace -- --test-threads=$(TEST_THREADS); status=$$?; sh scripts/remove-test-user.sh; exit $$status

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

# make deb, make rpm: both binaries, the systemd unit ally@.service, the
# logrotate file, ally-ctl's bash, zsh and fish completions,
# /etc/ally/example.toml.sample and /usr/lib/ally/masters
# (which the maintainer scripts call on upgrade and removal), as a package. Each
# installs its cargo plugin (cargo install --locked, the version below)
# when it is missing: a few minutes the first time.
CARGO_DEB_VERSION ?= 3.8.0
CARGO_GENERATE_RPM_VERSION ?= 0.21.1
# make install: the same files under $(DESTDIR); the unit and the logrotate
# file are rewritten for PREFIX and SYSCONFDIR. logrotate and systemd read
# /etc/logrotate.d and $(PREFIX)/lib/systemd/system (/usr and /usr/local).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
UNITDIR = $(DESTDIR)$(PREFIX)/lib/systemd/system
LIBDIR = $(DESTDIR)$(PREFIX)/lib/ally
DOCDIR = $(DESTDIR)$(PREFIX)/share/doc/ally
CONFDIR = $(DESTDIR)$(SYSCONFDIR)/ally
LOGROTATEDIR = $(DESTDIR)$(SYSCONFDIR)/logrotate.d
BASHCOMPDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHCOMPDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
FOR_PREFIX = sed -e 's|/usr/bin/|$(PREFIX)/bin/|g' -e 's|/usr/share/doc/ally/|$(PREFIX)/share/doc/ally/|g' -e 's|/etc/ally/|$(SYSCONFDIR)/ally/|g'

.PHONY: release-bins deb rpm install uninstall completions

# make completions: writes packaging/completions/ again from ally-ctl's
# commands (`ally-ctl completions SHELL`); a unit test fails until the
# files match after a change to the commands.
completions:
	$(CARGO) run -q -p ally-ctl -- completions bash > packaging/completions/ally-ctl.bash
	$(CARGO) run -q -p ally-ctl -- completions zsh > packaging/completions/_ally-ctl
	$(CARGO) run -q -p ally-ctl -- completions fish > packaging/completions/ally-ctl.fish

release-bins:
	$(CARGO) build --release -p ally-master -p ally-ctl

deb: release-bins
	@$(CARGO) deb --version >/dev/null 2>&1 || { \
	    echo "make deb: installing cargo-deb $(CARGO_DEB_VERSION) (cargo install --locked)"; \
	    $(CARGO) install --locked cargo-deb@$(CARGO_DEB_VERSION); }
	rm -f target/debian/ally_*.deb
	$(CARGO) deb -p ally-master --no-build --strip

rpm: release-bins
	@$(CARGO) generate-rpm --version >/dev/null 2>&1 || { \
	    echo "make rpm: installing cargo-generate-rpm $(CARGO_GENERATE_RPM_VERSION) (cargo install --locked)"; \
	    $(CARGO) install --locked cargo-generate-rpm@$(CARGO_GENERATE_RPM_VERSION); }
	rm -rf target/generate-rpm/bin target/generate-rpm/ally-*.rpm
	mkdir -p target/generate-rpm/bin
	strip --strip-unneeded -o target/generate-rpm/bin/ally-master target/release/ally-master
	strip --strip-unneeded -o target/generate-rpm/bin/ally-ctl target/release/ally-ctl
	$(CARGO) generate-rpm -p ally-master

# Without a build when the binaries exist, so that `make && sudo make
# install` runs cargo as the user only.
target/release/ally-master target/release/ally-ctl:
	$(CARGO) build --release -p ally-master -p ally-ctl

install: target/release/ally-master target/release/ally-ctl
	install -d $(BINDIR) $(UNITDIR) $(LIBDIR) $(DOCDIR) $(CONFDIR) $(LOGROTATEDIR) \
	    $(BASHCOMPDIR) $(ZSHCOMPDIR) $(FISHCOMPDIR)
	install -m 755 target/release/ally-master target/release/ally-ctl $(BINDIR)/
	install -m 644 packaging/completions/ally-ctl.bash $(BASHCOMPDIR)/ally-ctl
	install -m 644 packaging/completions/_ally-ctl $(ZSHCOMPDIR)/_ally-ctl
	install -m 644 packaging/completions/ally-ctl.fish $(FISHCOMPDIR)/ally-ctl.fish
	$(FOR_PREFIX) packaging/ally@.service > $(UNITDIR)/ally@.service
	$(FOR_PREFIX) packaging/logrotate > $(LOGROTATEDIR)/ally
	$(FOR_PREFIX) packaging/masters > $(LIBDIR)/masters
	chmod 644 $(UNITDIR)/ally@.service $(LOGROTATEDIR)/ally
	chmod 755 $(LIBDIR)/masters
	install -m 644 packaging/example.toml $(CONFDIR)/example.toml.sample
	install -m 644 README.md $(DOCDIR)/README.md

uninstall:
	rm -f $(BINDIR)/ally-master $(BINDIR)/ally-ctl $(UNITDIR)/ally@.service \
	    $(LIBDIR)/masters $(LOGROTATEDIR)/ally $(CONFDIR)/example.toml.sample $(DOCDIR)/README.md \
	    $(BASHCOMPDIR)/ally-ctl $(ZSHCOMPDIR)/_ally-ctl $(FISHCOMPDIR)/ally-ctl.fish
	rmdir $(LIBDIR) $(DOCDIR) $(CONFDIR) 2>/dev/null || true

clean:
	$(CARGO) clean

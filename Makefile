# Joblet's two commands are `make test` and `make demo`; each installs what it needs first.
# `make check` is the fast edit loop: lint and unit tests, no root, no systemd.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SANDBOX := tests/sandbox/sandbox
# libnss-systemd: PID 1 resolves job users from /run/userdb through it; e2fsprogs: mkfs.ext4;
# iproute2 and nftables: job networks (ip and nft, docs/networking.md); gcc and libc6-dev: joblet-init.
APT_PACKAGES := systemd dbus libnss-systemd libsystemd-dev pkg-config gcc libc6-dev util-linux procps e2fsprogs \
	iproute2 nftables
STAMP := $(VENV)/.installed
# joblet-init, the main process of every job (init/joblet-init.c). Static: it runs in any job's
# root, a runtime's /usr with another libc included. The agent takes this one over the
# installed /usr/lib/joblet/joblet-init.static (adapters/job_init.py).
INIT := build/joblet-init
CFLAGS_INIT := -static -O2 -Wall -Wextra -Werror
# make deb: what dpkg-buildpackage needs for packaging/debian (its control's Build-Depends) and lintian.
DEB_BUILD_PACKAGES := dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all \
	python3-setuptools python3-click python3-cryptography python3-rich python3-yaml gcc libc6-dev lintian
# make deb-test: fresh Debian roots (debootstrap) booted with systemd-nspawn.
DEB_TEST_PACKAGES := debootstrap systemd-container

# Installs the Debian packages of $(1) that are missing (apt only when one is).
define apt_ensure
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: deps check lint unit test integration slow demo bench sandbox-up sandbox-down clean deb deb-test \
	runtime-deps runtimes-build runtimes init

deps: $(STAMP) $(INIT)

init: $(INIT)
$(INIT): init/joblet-init.c | $(STAMP)
	@mkdir -p build
	gcc $(CFLAGS_INIT) -o $@ $<

# Idempotent: apt only when a package is missing, pip only when pyproject.toml changed.
$(STAMP): pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: deps
	$(BIN)/pytest -m "not integration and not slow and not before_reboot and not after_reboot" tests

check: lint unit

sandbox-up: deps
	$(SANDBOX) up
	$(SANDBOX) install

sandbox-down:
	$(SANDBOX) down

# Integration tests run inside the sandbox, so their paths, /run and /tmp are the agent's.
# Then what must be set up last (before_reboot), a reboot of the sandbox (down, up: its disk
# state stays), and what must outlive it (after_reboot).
integration: sandbox-up
	$(SANDBOX) run -- $(BIN)/pytest -m "integration" tests/integration tests/security
	$(SANDBOX) run -- $(BIN)/pytest -m "before_reboot" tests/integration
	$(SANDBOX) down
	$(SANDBOX) up
	$(SANDBOX) install
	$(SANDBOX) run -- $(BIN)/pytest -m "after_reboot" tests/integration

# The slow tier installs the built runtimes from their local registry and runs jobs in them.
# (tests/deb is the host's: make deb-test.)
slow: runtimes-build sandbox-up
	$(SANDBOX) run -- env JOBLET_RUNTIME_CACHE=$(RUNTIME_CACHE) $(BIN)/pytest -m "slow" tests --ignore=tests/deb

test: lint unit integration slow

# Runtimes (docs/runtimes.md): built on the host, which has the network (the sandbox has none),
# cached in $(RUNTIME_CACHE) by recipe content; then installed into the sandbox's agent through
# `rnx runtime install` from the local registry the build wrote.
RUNTIME_CACHE ?= /var/cache/joblet-runtimes
RUNTIME_APT := debootstrap
RUNTIMES ?= $(notdir $(patsubst %/recipe.yml,%,$(wildcard runtimes/*/recipe.yml)))

runtime-deps: deps
	$(call apt_ensure,$(RUNTIME_APT))

runtimes-build: runtime-deps
	JOBLET_RUNTIME_CACHE=$(RUNTIME_CACHE) $(BIN)/python runtimes/build.py $(RUNTIMES)

runtimes: runtimes-build sandbox-up
	for name in $(RUNTIMES); do \
	  $(SANDBOX) run -- $(BIN)/rnx runtime install $$name --registry $(RUNTIME_CACHE)/registry.json || exit 1; \
	done
	$(SANDBOX) run -- $(BIN)/rnx runtime list

demo: sandbox-up
	$(SANDBOX) run -- tests/sandbox/demo.sh

# The TCP benchmarks need a PKI in the sandbox; `pki init` refuses (harmlessly) when one exists.
bench: sandbox-up
	-$(SANDBOX) run -- $(BIN)/joblet-agent pki init 2>/dev/null && $(SANDBOX) run -- systemctl restart joblet.service
	$(SANDBOX) run -- $(BIN)/python -m bench.start_latency
	$(SANDBOX) run -- $(BIN)/python -m bench.api_latency
	$(SANDBOX) run -- $(BIN)/python -m bench.log_throughput
	$(SANDBOX) run -- $(BIN)/python -m bench.rnx_cold_start
	$(SANDBOX) run -- $(BIN)/python -m bench.upload_throughput
	$(SANDBOX) run -- $(BIN)/python -m bench.runtime_latency
	$(SANDBOX) run -- $(BIN)/python -m bench.admission
	$(SANDBOX) run -- $(BIN)/python -m bench.exec_latency

# The .debs land in build/deb (joblet_*.deb, rnx_*.deb), checked by lintian.
deb:
	$(call apt_ensure,$(DEB_BUILD_PACKAGES))
	packaging/debian/build-debs build/deb

# Installs the .debs into fresh Debian 12 and 13 roots booted with systemd (tests/deb).
deb-test: deps deb
	$(call apt_ensure,$(DEB_TEST_PACKAGES))
	JOBLET_DEBS=build/deb $(BIN)/pytest -m slow tests/deb

clean:
	-$(SANDBOX) down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build/deb

# Two entry points: `make run` (demo gateway) and `make test` (whole suite).
# Both install what they need and are quiet when everything is already there.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := mosquitto mosquitto-clients socat freeradius-utils chromium chromium-driver fonts-ipafont-gothic supervisor debootstrap lintian systemd-container fakeroot binutils
STAMP := $(VENV)/.installed

.PHONY: run test check deps debs venv iotagents nodejs bench clean

# The demo: a loopback-only mosquitto on port 18830 (stopped again on exit) and the gateway with
# simulated devices. Watch the data with: mosquitto_sub -p 18830 -t '#' -v
# The admin web UI runs beside it (its log in var/demo/web.log); the first admin is made on the box.
run: deps
	@mkdir -p var/demo; \
	$$(command -v mosquitto || echo /usr/sbin/mosquitto) -c config/demo-mosquitto.conf >var/demo/mosquitto.log 2>&1 & broker=$$!; \
	$(VENV)/bin/edgegw web --config config/demo.toml >var/demo/web.log 2>&1 & web=$$!; \
	trap 'kill $$broker $$web 2>/dev/null' EXIT; \
	echo "Web UI: https://localhost:8443/  (self-signed; check its fingerprint: $(VENV)/bin/edgegw web fingerprint --config config/demo.toml)"; \
	echo "First admin: $(VENV)/bin/edgegw user add admin --role admin --config config/demo.toml  (or the one-time /setup/... link in var/demo/web.log)"; \
	$(VENV)/bin/edgegw run --config config/demo.toml

# The sans-I/O device codecs must keep 100 % branch coverage: the run fails below it. Modules, not the
# packages: the families' adapters, buses and stores beside them do I/O and are tested end to end.
CODECS := $(addprefix adapters.scanner.,aim codabar codec ean keymap visit_qr) \
          $(addprefix adapters.rfid.,crc danish errors feig iso15962) \
          adapters.locker.codec \
          $(addprefix adapters.radius.,attributes codec errors mac onepass packet) \
          $(addprefix adapters.wifi_syslog.,codec errors framing message patterns)
COVERAGE := $(foreach c,$(CODECS),--cov=$(c)) --cov-branch --cov-fail-under=100 --cov-report=term-missing:skip-covered

# The suite runs in one pytest-xdist worker per core, at most 4: most tests wait on brokers, subprocesses and
# timers, and two workers on the 2-core development VM took it from 20.5 to 11.6 minutes. A test file stays
# in one worker, so its module fixtures (the browser's gateway, the web UI) are made once.
# TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n > 4 ? 4 : n )))

# A run whose pytest or one of its workers dies of a signal prints, last, the test it was in and the thread
# that crashed (tests/support/crash_report.py). Its folder is the run's own (var/test-crash.<pid>): runs side
# by side in one tree keep theirs apart.
test: deps
	@crash=var/test-crash.$$$$; \
	EDGEGW_CRASH_DIR=$$crash $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(COVERAGE) $(PYTEST_ARGS); \
	status=$$?; \
	if [ $$status -eq 0 ] || $(PY) -m tests.support.crash_report $$crash $$status; then rm -rf $$crash; fi; \
	exit $$status

# The lint, format and type gate (.ci/run runs it before the tests).
check: venv
	@$(VENV)/bin/ruff check --quiet .
	@$(VENV)/bin/ruff format --check --quiet .
	@$(VENV)/bin/mypy --no-error-summary

deps: debs venv iotagents

# Debian packages the tests and the demo need (real brokers and serial ptys, radclient).
debs:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root (or install:$$missing)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(STAMP)

# The real FIWARE IoT Agents (JSON and UltraLight) for tests/iota_agent: their sources are tarballs in
# the shared vendor folder (no registry serves them). Each is unpacked into .venv/iotagents/<name>-<commit>/,
# its git dependency on iotagent-node-lib (unreachable here) swapped for the npm release, and installed
# with npm; a stamp makes the next run quiet. Tests only: nothing of this is shipped.
IOTA_VENDOR ?= $(firstword $(wildcard ../shared/vendor ../../shared/vendor))
IOTA_NODE_LIB := 4.14.0
IOTA_DIR := $(VENV)/iotagents
IOTA_AGENTS := $(basename $(basename $(notdir $(wildcard $(IOTA_VENDOR)/iotagent-*.tar.gz))))

iotagents: nodejs $(foreach a,$(IOTA_AGENTS),$(IOTA_DIR)/$(a)/.installed)
	@[ -n "$(IOTA_AGENTS)" ] || { echo "no iotagent-*.tar.gz in IOTA_VENDOR=$(IOTA_VENDOR); set IOTA_VENDOR"; exit 1; }

nodejs:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing Debian packages: nodejs npm"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root (or install: nodejs npm)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi

$(IOTA_DIR)/%/.installed: $(IOTA_VENDOR)/%.tar.gz | nodejs
	@echo "installing the FIWARE IoT Agent $* for the tests into $(IOTA_DIR)/$*"
	@rm -rf $(IOTA_DIR)/$* $(IOTA_DIR)/$*.part && mkdir -p $(IOTA_DIR)/$*.part
	@tar -xzf $< -C $(IOTA_DIR)/$*.part --strip-components=1
	@sed -i 's#"iotagent-node-lib": *"[^"]*"#"iotagent-node-lib": "$(IOTA_NODE_LIB)"#' $(IOTA_DIR)/$*.part/package.json
	@grep -q '"iotagent-node-lib": "$(IOTA_NODE_LIB)"' $(IOTA_DIR)/$*.part/package.json \
	  || { echo "$*: package.json names no iotagent-node-lib dependency to pin"; exit 1; }
	@cd $(IOTA_DIR)/$*.part && npm install --omit=dev --no-audit --no-fund --loglevel=error >npm-install.log 2>&1 \
	  || { cat npm-install.log; echo "npm install failed for $* (log: $(IOTA_DIR)/$*.part/npm-install.log)"; exit 1; }
	@mv $(IOTA_DIR)/$*.part $(IOTA_DIR)/$* && touch $@

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,check]' >$(VENV)/install.log 2>&1 \
	  || { cat $(VENV)/install.log; echo "pip install failed (log: $(VENV)/install.log)"; exit 1; }
	@$(PY) -c 'import gateway, adapters' && touch $(STAMP)

bench: deps
	@$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis

# The Debian package: dist/edgegw_<version>-1_<arch>.deb with the application and its dependencies in
# /opt/edgegw/.venv (config/debian/build-deb.sh says how). Install with: apt install ./dist/edgegw_*.deb
.PHONY: deb
deb:
	@config/debian/build-deb.sh dist

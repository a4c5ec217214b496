# Every task a person does with Proofless is a target here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= deploy/config/gateway.toml
CERTS  := certs/dev

.PHONY: help venv proto certs run demo simulators cluster system-deps test lint fmt bench soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install Proofless with its dev tools

proto: $(STAMP)  ## regenerate proofless/v1 from protos/
	$(BIN)/python protos/generate.py

$(CERTS)/.complete: $(STAMP)
	$(BIN)/proofless certs init --dir $(CERTS)

certs: $(CERTS)/.complete  ## generate the dev CA, certificates and signing keys (never committed)

run: certs  ## start the department simulators and the gateway; Ctrl-C stops
	$(BIN)/proofless dev --config $(CONFIG)

demo: certs  ## a scripted tour of approval-system calls against a fresh gateway
	$(BIN)/proofless demo --config $(CONFIG)

simulators: certs  ## only the embedded department simulators
	$(BIN)/proofless simulators --config $(CONFIG)

REPLICAS ?= 3
cluster: certs system-deps  ## REPLICAS (3) gateways behind nginx on 127.0.0.1:50050; Ctrl-C stops
	$(BIN)/python -m gateway.devtools.cluster --config $(CONFIG) --replicas $(REPLICAS)

# Debian packages some tests drive for real: Chromium (dashboard), promtool (Prometheus rules),
# nginx with its stream module (the cluster's TCP load balancer).
# Installed when this runs as root with apt-get (CI, dev machines); elsewhere those tests skip.
SYSTEM_PACKAGES := chromium fonts-wqy-zenhei prometheus nghttp2-client nginx libnginx-mod-stream
system-deps:  ## install the Debian packages the browser, promtool and h2load steps use (root)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "not installing $$missing (needs root and apt-get); the tests that use them skip"; fi

test: certs system-deps  ## the whole test suite
	$(BIN)/python -m pytest

lint: $(STAMP)  ## ruff, mypy and the import layers
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)  ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The bench extra: the CEL libraries bench/cel.py compares with the compiled claim rules.
$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	touch $@

bench: certs $(VENV)/.bench-installed  ## measure the gateway against bare grpc.aio baselines (see BENCHMARKS.md)
	$(BIN)/python -m bench

soak: $(STAMP)  ## 10 minutes at ~70% of capacity: errors and gateway RSS growth (≤ 10%)
	$(BIN)/python -m tests.support.soak --minutes 10

clean:  ## remove the venv, generated dev material and run-time state
	rm -rf $(VENV) $(CERTS) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

# pit-streams developer entry points. Everything sets itself up on a fresh machine:
# the venv (.venv, from pyproject.toml) and the Kafka broker jars (.cache/kafka-jars, from
# infra/kafka/pom.xml) are created on first use and re-made only when their inputs change.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
VENV_STAMP  := $(VENV)/.installed
KAFKA       := infra/kafka/kafka.sh
PYTEST_ARGS ?=

# First interpreter >= 3.11 (override with `make venv PYTHON=/path/to/python3`).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  && { command -v $$p; break; }; done)
endif

.PHONY: help venv kafka-jars kafka-up kafka-down kafka-status test lint bench chaos demo clean k8s

help:
	@echo "make demo        run the demo (sets up venv + Kafka jars on first use)"
	@echo "make test        run the test suite against a private, throw-away Kafka broker"
	@echo "make kafka-up    start a local Kafka broker on 127.0.0.1:\$${KAFKA_PORT:-9092} (data in .run/kafka)"
	@echo "make kafka-down  stop it"
	@echo "make lint        ruff + mypy --strict"
	@echo "make bench       benchmarks;  make chaos: failure-injection run"
	@echo "make clean       remove venv, caches, jars and local broker data"

# pit-proto ships no type information and generated code is never committed (contract 1.6):
# its mypy stubs are generated into the venv from the installed wheel (docs/adr/0006). Checked
# on every use (~1 s, rewrites only what differs), so a reinstalled wheel never keeps old stubs.
venv: $(VENV_STAMP)
	@$(VENV)/bin/python scripts/proto_stubs.py

$(VENV_STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python >= 3.11 not found (set PYTHON=...)" >&2; exit 1; }
	@test -x $(VENV)/bin/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing pit-streams[dev] into $(VENV) (log: $(VENV)/pip-install.log) ..."
	@{ $(VENV)/bin/python -m pip install --disable-pip-version-check -U pip \
	   && $(VENV)/bin/python -m pip install --disable-pip-version-check -e '.[dev]'; } \
	   >$(VENV)/pip-install.log 2>&1 || { tail -n 40 $(VENV)/pip-install.log >&2; exit 1; }
	@touch $@

kafka-jars:
	@$(KAFKA) jars

kafka-up:
	@$(KAFKA) start

kafka-down:
	@$(KAFKA) stop

kafka-status:
	@$(KAFKA) status || true

test: venv kafka-jars lint
	$(VENV)/bin/pytest -q -ra --durations=10 $(PYTEST_ARGS)

k8s: venv
	$(VENV)/bin/pit-streams k8s render

lint: venv
	$(VENV)/bin/ruff check pit_streams apps tests bench scripts devkit demo
	$(VENV)/bin/mypy --strict pit_streams apps scripts devkit demo

bench: venv kafka-jars
	$(VENV)/bin/python -m bench

chaos: venv kafka-jars
	$(VENV)/bin/python -m bench.chaos

demo: venv kafka-jars
	$(VENV)/bin/python -m demo

clean:
	@-$(KAFKA) stop
	rm -rf $(VENV) .cache .run build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

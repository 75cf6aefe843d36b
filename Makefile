# reco: `make demo` runs the main job on the embedded default; `make test` runs the tests.
# Both create .venv through `make install` when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; a bare `torch` would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: install java demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "reco needs Python 3.11+"; exit 1; }
	@$(MAKE) --no-print-directory java
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# Spark 4 needs Java 17+: use JAVA_HOME or `java` on PATH, else install Debian's JRE where we can.
java:
	@if [ -n "$$JAVA_HOME" ] && [ -x "$$JAVA_HOME/bin/java" ]; then JAVA="$$JAVA_HOME/bin/java"; else JAVA=$$(command -v java); fi; \
	major=$$([ -n "$$JAVA" ] && "$$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -n "$$major" ] && [ "$$major" -ge 17 ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing a Java runtime for Spark (Debian openjdk-17-jre-headless, or 21 where 17 is gone)"; \
	  apt-get update -qq && { apt-get install -y -qq openjdk-17-jre-headless || apt-get install -y -qq openjdk-21-jre-headless; }; \
	else \
	  echo "reco needs Java 17+ for Spark: install openjdk-17-jre-headless (or any JDK 17+) and set JAVA_HOME"; exit 1; \
	fi

demo: install
	$(VENV)/bin/reco demo

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: install
	$(PY) bench/ingest_throughput.py
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) demo warehouse landing bench/out .pytest_cache

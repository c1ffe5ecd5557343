# Two commands do the whole set-up on a fresh machine:
#   make demo   build the venv, then run the demo
#   make test   build the venv, then lint, type-check and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS ?= constraints/cpu.txt
STAMP := $(VENV)/.deepeyes-installed
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest completions bench sandbox-deps wheel-check clean browser-deps mutation

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	@touch $@

sandbox-deps:
	@bash scripts/ensure-bwrap.sh

browser-deps:
	@bash scripts/ensure-chromium.sh

demo: $(STAMP) sandbox-deps
	@bash scripts/demo.sh

test: $(STAMP) sandbox-deps browser-deps lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check deepeyes_cli tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

completions: $(STAMP)
	$(VENV)/bin/deepeyes completions write completions

# mutation testing of the pure core modules (scripts/mutation_targets.toml lists them); not in .ci/run
mutation: $(STAMP)
	$(PY) scripts/mutation.py $(MUTATION_ARGS)

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

wheel-check:
	@bash scripts/wheel-check.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs

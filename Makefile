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

.PHONY: demo test lint typecheck pytest completions bench sandbox-deps clean
.PHONY: train-warmup test-train

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	@touch $@

sandbox-deps:
	@bash scripts/ensure-bwrap.sh

demo: $(STAMP) sandbox-deps
	@bash scripts/demo.sh

test: $(STAMP) sandbox-deps lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check deepeyes_cli tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# DeepSpeed's CPU communication op is JIT-built on first use (1-10 min here): once per machine,
# into torch's default extension cache, with the venv's ninja (another ninja rebuilds it).
train-warmup: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH DS_ACCELERATOR=cpu $(PY) scripts/warm-deepspeed-ops.py

# Multi-process training: torchrun + DeepSpeed ZeRO-3 on the CPU accelerator, two simulated nodes.
test-train: $(STAMP) train-warmup
	PATH=$(abspath $(VENV))/bin:$$PATH DEEPEYES_MULTIPROC=1 $(VENV)/bin/pytest -m multiproc tests/integration/train $(PYTEST_ARGS)

completions: $(STAMP)
	$(VENV)/bin/deepeyes completions write completions

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs

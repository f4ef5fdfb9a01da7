# Two commands a fresh machine needs: `make demo` (the main job) and `make test` (everything, slow tests included).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
INTEGRATIONS := integrations/llama-index-cera integrations/langchain-cera
EXTRAS := baselines,eval,fast,chroma,scale,rag,dev
# PyTorch's CPU wheel index for machines whose pip reaches only PyPI (there torch==2.13.0 is the CUDA build):
#   make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
# llama.cpp without -march=native: AVX2 kernels run on any x86-64-v3 CPU, in a VM or not (see $(STAMP)).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: venv test test-fast lint typecheck browser demo data-stats clean

# The venv is refreshed whenever pyproject.toml or an integration's pyproject changes.
$(STAMP): pyproject.toml $(wildcard integrations/*/pyproject.toml) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch first: a looser pin pulls gigabytes of CUDA wheels.
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	# llama-cpp-python builds llama.cpp from source; -march=native would compile its AMX kernels on CPUs that
	# report AMX, and a VM that does not grant AMX to the process dies on the first `ldtilecfg` (SIGSEGV).
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q --no-cache-dir "llama-cpp-python[server]>=0.3,<0.4"
	$(PIP) install -q -e ".[$(EXTRAS)]" $(foreach d,$(wildcard $(INTEGRATIONS)),-e $(d))
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check cera_rag

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	# llama_index.* is a namespace package: checked by module name (the editable install resolves it).
	$(VENV)/bin/mypy -p llama_index.embeddings.cera -p llama_index.postprocessor.cera -p llama_index.retrievers.cera

# Headless Chromium for the demo screenshot tests: Debian's package, installed when missing and root.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium (apt-get) for the screenshot tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "No Chromium and no root: the screenshot tests will skip (install the chromium package)."; \
	fi

test: $(STAMP) lint typecheck browser
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest -q

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pytest -q -m "not slow"

data-stats: $(STAMP)
	$(VENV)/bin/cera-rag data stats

# Trains the quick preset first when no checkpoints/cera-best or checkpoints/cera-quick exists.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/cera-rag demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

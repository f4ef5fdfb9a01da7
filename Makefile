# Two commands a fresh machine needs: `make demo` (the main job) and `make test` (everything, slow tests included).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
INTEGRATIONS := integrations/llama-index-cera integrations/langchain-cera
EXTRAS := baselines,eval,fast,chroma,rag,dev

.PHONY: venv test test-fast lint typecheck demo data-stats clean

# The venv is refreshed whenever pyproject.toml or an integration's pyproject changes.
$(STAMP): pyproject.toml $(wildcard integrations/*/pyproject.toml) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU build of torch first: a looser pin pulls gigabytes of CUDA wheels.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRAS)]" $(foreach d,$(wildcard $(INTEGRATIONS)),-e $(d))
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check cera_rag

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP) lint typecheck
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

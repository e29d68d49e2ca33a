# xpretrieval — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# sentence-transformers' ONNX and OpenVINO backends for `make bench`: optimum's exporters pin an
# older transformers than xpretrieval's, so the peers get an environment of their own
PEERS_VENV := .venv-peers
PEERS := "sentence-transformers[onnx,openvino]==5.7.0" transformers==4.57.6 optimum-onnx==0.1.0 optimum-intel==1.27.0 optimum==2.1.0
# Offline caches for the real model and data, when ../shared is beside the checkout (CI, developers).
# Real users online need none of it: the same configs download from the Hugging Face hub and ir-datasets.
SHARED_ENV := $(wildcard ../shared/offline/env.sh)
OFFLINE := $(if $(SHARED_ENV),eval "$$($(SHARED_ENV))" &&,)

.PHONY: help install demo test test-baselines test-all bench lint docs clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install xpretrieval with its test tools, trackers and docs tools (CPU torch)

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,bench,trackers,docs,backends]"
	touch $@

demo: install  ## fine-tune all-MiniLM-L6-v2 on SciFact train, print nDCG@10 before/after on SciFact test
	$(OFFLINE) PYTHONUNBUFFERED=1 $(PY) -m xpretrieval train +experiment=demo

# coverage counts the in-process tests (the CLI smoke tests run in subprocesses it does not follow)
test: install  ## the fast test suite (no slow tests, no baseline checks), then its line coverage of xpretrieval/
	$(OFFLINE) $(PY) -m pytest -m "not slow and not baseline" -q -n auto --dist loadgroup --cov=xpretrieval --cov-report=
	@echo "line coverage of xpretrieval/: $$($(PY) -m coverage report --format=total)%"

test-baselines: install  ## every baseline's pinned fast check (experiments/*/baseline.yaml), portable numerics; CI runs it
	$(OFFLINE) $(PY) -m pytest -m baseline -q -n auto

test-all: install  ## every test, slow ones included
	$(OFFLINE) $(PY) -m pytest -q -n auto

bench: install $(PEERS_VENV)/.installed  ## benchmarks (13-20 min on 2 cores): ratios against sentence-transformers (each backend), bm25s, SciPy, Seismic and faiss, same run; a markdown table
	$(OFFLINE) PYTHONUNBUFFERED=1 $(PY) -m benchmarks.training
	$(OFFLINE) PYTHONUNBUFFERED=1 $(PY) -m benchmarks.encoding
	$(OFFLINE) PYTHONUNBUFFERED=1 $(PY) -m benchmarks.backends
	$(OFFLINE) PYTHONUNBUFFERED=1 $(PY) -m benchmarks.retrieval
	$(PY) -m benchmarks.table

$(PEERS_VENV)/.installed: constraints.txt
	python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q -c constraints.txt $(PEERS)
	touch $@

lint: install  ## ruff checks and formatting, and the import layers (import-linter, pyproject.toml)
	$(VENV)/bin/ruff check xpretrieval tests benchmarks
	$(VENV)/bin/ruff format --check xpretrieval tests benchmarks
	$(VENV)/bin/lint-imports

# No -q: mkdocs's --quiet drops warnings before --strict counts them, so a broken link would pass.
# NO_MKDOCS_2_WARNING silences Material's banner about its own end of life (nothing about these docs).
docs: install  ## build the documentation site into site/ (strict: a broken link or reference fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:  ## remove run outputs, caches and the built site (keeps .venv)
	rm -rf outputs multirun site .pytest_cache .ruff_cache

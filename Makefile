# DeepSeek-Mini. Two commands do everything on a fresh machine:
#   make book   set up .venv, execute every chapter (automatic profile), render the book, print index.html
#   make test   set up .venv, then everything CI checks (ruff, unit + API tests, export sync, nbmake, book build)
# GPU users: install a CUDA build of PyTorch into .venv first (see README), the rest keeps it.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
TORCH_SPEC ?= torch==2.13.0
NBMAKE_TIMEOUT ?= 900
# pytest exits 5 when it collects nothing: that is not a failure of the suite.
PYTEST = $(PY) -m pytest
ALLOW_EMPTY = rc=$$?; if [ $$rc -eq 5 ]; then echo "(no tests collected)"; rc=0; fi; exit $$rc

.PHONY: install install-dev book book-ci test lint unit notebooks export export-check lab serve bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	touch $@

$(VENV)/.reader: requirements.txt pyproject.toml $(VENV)/.torch
	$(PY) -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.reader
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

install: $(VENV)/.reader
install-dev: $(VENV)/.dev

export: install
	$(PY) -m dsmini_helpers.export

export-check: install
	$(PY) -m dsmini_helpers.export --check

book: install
	$(BIN)/jupyter-book build . --keep-going
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

# The book as CI builds it: ci profile, offline, warnings are errors, its own output folder and cache.
book-ci: install-dev
	DSMINI_PROFILE=ci HF_HUB_OFFLINE=1 DSMINI_DATA=offline $(BIN)/jupyter-book build . -W -n --keep-going --path-output _build/ci
	@echo "The ci book: file://$(CURDIR)/_build/ci/_build/html/index.html"

lint: install-dev
	$(BIN)/ruff check .

unit: install-dev
	DSMINI_PROFILE=ci HF_HUB_OFFLINE=1 DSMINI_DATA=offline $(PYTEST) tests -m "not browser" -q; $(ALLOW_EMPTY)

notebooks: install-dev
	DSMINI_PROFILE=ci HF_HUB_OFFLINE=1 DSMINI_DATA=offline $(PYTEST) --nbmake --nbmake-kernel=python3 \
	  --nbmake-timeout=$(NBMAKE_TIMEOUT) notebooks -q; $(ALLOW_EMPTY)

browser: install-dev
	$(PYTEST) tests -m browser -q; $(ALLOW_EMPTY)

test: lint export-check unit notebooks book-ci browser
	@echo "make test: all checks passed"

lab: install
	$(BIN)/jupyter lab notebooks

# Chapter 9's server with its transport limits (the same flags as server_transport.UVICORN_FLAGS);
# DSMINI_PROFILE picks the checkpoint, DSMINI_REQUIRE_MODEL=1 refuses to start without one.
serve: install
	$(BIN)/uvicorn dsmini_helpers.api:app --host $${HOST:-127.0.0.1} --port $${PORT:-8000} \
	  --http dsmini_helpers.server_transport:SlowClientTimeoutH11 --limit-concurrency 200 \
	  --timeout-keep-alive 5 --timeout-graceful-shutdown 10 --h11-max-incomplete-event-size 16384 \
	  --no-access-log

bench: install-dev
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build

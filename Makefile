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
# How CI runs: ci profile, offline, and one data folder of its own (never the reader's data/), shared by the
# unit tests, the notebooks and the ci book of one run, so chapters reuse each other's artefacts.
# tests/conftest.py gives a plain `pytest` run the same folder.
CI_DATA_DIR ?= $(CURDIR)/_build/ci-data
CI_ENV = DSMINI_PROFILE=ci HF_HUB_OFFLINE=1 DSMINI_DATA=offline DSMINI_DATA_DIR=$(CI_DATA_DIR)

.PHONY: install install-dev book book-ci figures test lint unit notebooks export export-check lab serve bench clean \
  gpu-check gpu-check-dry-run gpu-wheels

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

# The book's conceptual figures: SVG drawn by book/figures/make_figures.py (committed, so JupyterLab shows them too).
figures: install
	$(PY) book/figures/make_figures.py

# The reader's book, in the automatic profile (`gpu` with CUDA, else `cpu`) unless DSMINI_PROFILE names one; every
# page says which profile rendered it. Executed notebooks are cached by their source, not by profile, so a build
# in another profile than the last one clears that cache and re-reads every page: no page keeps another
# profile's outputs.
BOOK_PROFILE = $(shell $(PY) -c "from dsmini_helpers.profiles import get_profile; print(get_profile())")
book: install figures
	@profile=$(BOOK_PROFILE); stamp=_build/.book-profile; all=; \
	if [ -f $$stamp ] && [ "$$(cat $$stamp)" != "$$profile" ]; then \
	  echo "profile $$(cat $$stamp) -> $$profile: clearing the executed-notebook cache"; \
	  rm -rf _build/.jupyter_cache _build/jupyter_execute; all=--all; fi; \
	echo "Rendering the book in the $$profile profile"; \
	$(BIN)/jupyter-book build . --keep-going $$all && echo $$profile > $$stamp
	@echo "The book: file://$(CURDIR)/_build/html/index.html"

# The book as CI builds it: ci profile, offline, CI's data folder, warnings are errors, its own output folder.
# A check that every page runs and every glue key resolves, not the book to read (that is `make book`).
book-ci: install-dev figures
	$(CI_ENV) $(BIN)/jupyter-book build . -W -n --keep-going --path-output _build/ci
	@echo "The ci book: file://$(CURDIR)/_build/ci/_build/html/index.html"

lint: install-dev
	$(BIN)/ruff check .

unit: install-dev
	$(CI_ENV) $(PYTEST) tests -m "not browser and not gpu" -q; $(ALLOW_EMPTY)

notebooks: install-dev
	$(CI_ENV) $(PYTEST) --nbmake --nbmake-kernel=python3 \
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

# On a GPU machine (PyTorch with CUDA installed, no .venv needed): every CUDA check in one run of <= 8 min,
# results in benchmarks/results/gpu/. The machine may lack some packages and the network: `make gpu-wheels`
# here first, then carry .whl/gpu and _build/ci-data/{processed,vocab,tokens} along (38 MB).
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

gpu-check-dry-run: install-dev
	$(PY) benchmarks/gpu_check.py --dry-run

GPU_WHEEL_PKGS = nbmake ipykernel ipywidgets fastapi uvicorn mwparserfromhell httpx pyyaml pytest-xdist
gpu-wheels: install
	$(PY) -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl/gpu $(GPU_WHEEL_PKGS)

clean:
	rm -rf _build

# Primus developer entry points. `make demo` and `make test` work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-nightly test-fast lint format demo clean help

help:
	@echo "make setup  - create $(VENV) (Python 3.12) with the pinned dependencies"
	@echo "make test   - the test suite CI runs (all but the nightly-marked long runs)"
	@echo "make test-nightly - the long end-to-end runs make test leaves out"
	@echo "make demo   - prepare real text, train a tiny Llama on it, plot report.png (CPU: a few minutes)"
	@echo "make lint   - ruff check + format check"

setup:
	@bash scripts/setup_venv.sh

test: setup
	@bash scripts/run_tests.sh -m "not nightly" $(PYTEST_ARGS)

test-nightly: setup  # the long end-to-end runs CI leaves out (a few minutes each)
	@bash scripts/run_tests.sh -m nightly $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -q -m "not megatron and not slow" $(PYTEST_ARGS)

lint: setup
	@$(PY) -m ruff check primus tests benchmarks
	@$(PY) -m ruff format --check primus tests benchmarks

format: setup
	@$(PY) -m ruff format primus tests benchmarks
	@$(PY) -m ruff check --fix primus tests benchmarks

demo: setup
	@bash scripts/demo.sh

clean:
	rm -rf runs .pytest_cache .ruff_cache

# The README's two commands: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint schemas clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,bench,celery]'
	touch $(STAMP)

install: $(STAMP)

demo: install  ## seed four province sandboxes, run their DAGs through Airflow, extract, verify, summarize
	$(BIN)/exchange demo --home var/demo

test: install  ## the whole suite, slow scenarios included (what CI runs)
	$(BIN)/pytest

test-fast: install  ## the quick loop: everything but the slow scenarios
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/exchange contracts lint

schemas: install  ## regenerate schemas/*.json from the pydantic models
	$(BIN)/python -m exchange.schemas

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

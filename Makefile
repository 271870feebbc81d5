# The README's two commands: `make demo` and `make test`. Both create .venv and install on first use.
#   make demo  installs the runtime dependencies only (`pip install -e .`).
#   make test  also installs the extras the suite exercises (dev; bench for the benchmark smoke tests;
#              celery for the Celery-worker integration test) and the Debian packages pip cannot
#              (chromium for the report's page test, fonts-noto-cjk for Chinese text in pages, age to open
#              encrypted extracts as a department would), datacontract-cli in its own venv (.venv-tools), and
#              the official delta-sharing client in another (.venv-delta-sharing; `make delta-sharing-client`).
# Separate stamps: `make demo` then `make test` adds the extras; `make test` then `make demo` adds nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-stamp
TEST_STAMP := $(VENV)/.test-stamp
TEST_EXTRAS := dev,bench,celery
# datacontract-cli (the ODCS tool provinces lint contracts with) pins typer<0.28, older than the hub's, so it
# lives in a venv of its own; `make lint` and tests/integration/test_datacontract_cli.py run it from there.
TOOLS_VENV ?= .venv-tools
DATACONTRACT := $(TOOLS_VENV)/bin/datacontract
# The duckdb extra (and the lake's duckdb) for `datacontract test` on a DuckDB export of the lake.
DATACONTRACT_CLI := 'datacontract-cli[duckdb]==1.2.8' duckdb==1.5.5
# Debian packages the tests need that pip cannot install; apt-get runs only for the missing ones.
SYSTEM_PACKAGES ?= chromium fonts-noto-cjk age

# The official Delta Sharing client, run by tests/integration/test_delta_sharing.py as a department would, in a
# venv of its own: it pins pandas<3 and pyarrow<24, which the hub's venv (pandas 3, pyarrow 26) cannot hold.
DELTA_SHARING_CLIENT ?= delta-sharing==1.4.2
DS_VENV ?= .venv-delta-sharing

.PHONY: install install-test system-packages delta-sharing-client demo test test-fast lint schemas mutation clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME_STAMP)

# The test install is a superset of the runtime one, so it refreshes the runtime stamp too.
$(TEST_STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $(TEST_STAMP) $(RUNTIME_STAMP)

install: $(RUNTIME_STAMP)

install-test: $(TEST_STAMP) system-packages $(DATACONTRACT)

$(DATACONTRACT): Makefile
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet $(DATACONTRACT_CLI)
	touch $(DATACONTRACT)

# One `apt-get update`, then one install of only what dpkg does not list as installed; nothing when all are.
system-packages:
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "warning: not a Debian system; install$$missing yourself (some integration tests need them)" >&2; exit 0; fi; \
	sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	echo "installing Debian packages:$$missing"; \
	$$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends $$missing

$(DS_VENV)/.stamp: Makefile
	$(PYTHON) -m venv $(DS_VENV)
	$(DS_VENV)/bin/pip install --quiet '$(DELTA_SHARING_CLIENT)'
	touch $@

delta-sharing-client: $(DS_VENV)/.stamp

demo: install  ## seed four province sandboxes, run their DAGs through Airflow, extract, verify, summarize
	$(BIN)/exchange demo --home var/demo

# pytest-xdist spreads the suite over TEST_JOBS worker processes (auto: one per core; `make test TEST_JOBS=4`
# oversubscribes, which pays when the Airflow scenarios wait on their schedulers). --dist loadfile keeps a
# file's tests on one worker, so a module-scoped fixture (the demo's home, an Airflow deployment) is built once.
# --no-loadscope-reorder hands files out in collection order (tests/dags, e2e, integration, then unit), so the
# few long Airflow scenario files start first and the many short unit files fill in around them; xdist's
# default order (most tests first) left those scenarios for the end, one worker running them while the other
# idled. --durations=20 lists the slowest twenty tests at the end of the output.
TEST_JOBS ?= auto
PYTEST_PARALLEL = -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=20

test: install-test delta-sharing-client  ## the whole suite, slow scenarios included (what CI runs)
	$(BIN)/pytest $(PYTEST_PARALLEL)

# The quick loop is the unit and DAG tests that each take under a second: tests/e2e and tests/integration (real
# Airflow runs, loopback servers, outside clients) are left to `make test`, and so are the tests that
# tests/heavy.txt lists (tools/heavy_tests.py refreshes it from a whole run's JUnit report).
test-fast: install-test delta-sharing-client  ## the quick loop: unit and DAG tests under a second each
	$(BIN)/pytest tests/unit tests/dags -m "not slow and not heavy" $(PYTEST_PARALLEL)

lint: $(TEST_STAMP) $(DATACONTRACT)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/exchange contracts lint
	for contract in contracts/*.odcs.yaml; do $(DATACONTRACT) lint "$$contract" || exit 1; done

# Mutation testing of the trust core (issue 21): [tool.mutmut] in pyproject.toml says which modules and tests.
# Hours, not minutes, so CI runs it weekly (.ci/mutation), never in .ci/run. mutmut resumes where a stopped run
# left off and re-tests only functions changed since, also on a fresh checkout: the verdicts are kept in
# tests/mutation/verdicts.json (tools/mutation_ledger.py seeds mutants/ from it and saves back to it, also
# when the run fails; MUTATION_FRESH=1 starts from nothing). MUTANTS narrows the run to some mutants (a glob,
# e.g. MUTANTS='exchange.reference.checksums.*', re-tested whatever their verdict); the report then rates only
# what was run (--partial).
MUTANTS ?=
MUTATION_JOBS ?= 2
MUTATION_FRESH ?=
mutation: $(TEST_STAMP)  ## mutation-test the trust core; fail if a module kills < 90 % of its non-equivalent mutants
	$(if $(MUTATION_FRESH),rm -rf mutants,$(BIN)/python -m tools.mutation_ledger seed)
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS); status=$$?; \
	$(BIN)/python -m tools.mutation_ledger save && exit $$status
	$(BIN)/python tools/mutation_report.py $(if $(MUTANTS),--partial)

schemas: install  ## regenerate schemas/*.json from the pydantic models
	$(BIN)/python -m exchange.schemas

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache $(DS_VENV) mutants

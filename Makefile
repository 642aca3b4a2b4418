# tap-dataplatforms: the two commands of the README, and a few helpers.
#
#   make demo   sandbox -> tap-dataplatforms -> Meltano -> DuckDB (warehouse/, the demo's
#               target), prints rows per table and what a second run deleted and added
#   make test   lint, type-check, the whole test suite, and the unit tests on the oldest
#               and newest Python pyproject.toml claims (what CI runs)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MELTANO := .venv-meltano/bin/meltano
DAGSTER_VENV := .venv-dagster
DAGSTER := $(DAGSTER_VENV)/bin/dagster
ORACLE_VENV := .venv-oracle
ORACLE := $(ORACLE_VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help demo test lint format pytest unit-pythons meltano dagster oracle bench clean

help:
	@echo "make demo    run the demo (sandbox -> Meltano -> DuckDB) and print rows per table"
	@echo "make test    ruff, mypy, the whole pytest suite and the unit tests on 3.10 and 3.13 (CI)"
	@echo "make unit-pythons  the unit tests on the oldest and newest supported Python only"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make format  ruff format and ruff check --fix"
	@echo "make bench   throughput and memory against the raw floor, msdk and dlt (BENCH_ARGS=--quick),"
	@echo "             then each budget beside the server-side peak per second (BUDGET_ARGS=--quick)"
	@echo "make clean   remove the environments, .meltano/ and output/"

demo:
	$(PYTHON) scripts/demo.py

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp is refreshed whenever pyproject.toml changes (scripts/demo.py reads it too).
$(VENV)/.installed: pyproject.toml sandbox/pyproject.toml warehouse/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./sandbox -e ./warehouse
	touch $@

# Meltano lives in its own environment: it pins its own dependencies (SQLAlchemy among them).
meltano: $(MELTANO)
$(MELTANO): scripts/demo.py
	$(PYTHON) scripts/demo.py --setup-only
	touch $@

# Dagster (orchestration/dagster_defs.py) in its own environment too: it pins its own
# dependencies and only runs the Meltano executable. The version is pinned in the file.
dagster: $(DAGSTER)
$(DAGSTER): orchestration/requirements.txt
	test -x $(DAGSTER_VENV)/bin/python || $(PYTHON) -m venv $(DAGSTER_VENV)
	$(DAGSTER_VENV)/bin/python -m pip install -q --upgrade pip
	$(DAGSTER_VENV)/bin/python -m pip install -q -r orchestration/requirements.txt
	touch $@

# The official Redivis client, the oracle tests/test_redivis_oracle.py reads the sandbox with:
# its own environment, since it pulls pandas, polars, dask and geopandas. Pinned in the file;
# built with uv when there is one (.venv-meltano has it), else pip; compiled ahead (uv does
# not by default), so the first import of pandas and friends in a test is not a compile.
oracle: $(ORACLE)
$(ORACLE): tests/oracle/requirements.txt
	rm -rf $(ORACLE_VENV)
	if [ -x .venv-meltano/bin/uv ]; then \
		.venv-meltano/bin/uv venv -q --python $(PYTHON) $(ORACLE_VENV) && \
		VIRTUAL_ENV=$(ORACLE_VENV) .venv-meltano/bin/uv pip install -q --compile-bytecode -r $<; \
	else \
		$(PYTHON) -m venv $(ORACLE_VENV) && \
		$(ORACLE_VENV)/bin/python -m pip install -q -r $<; \
	fi
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy tap_dataplatforms sandbox/dataplatforms_sandbox warehouse/dataplatforms_warehouse

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# First the tests that measure time or rate at the sandbox, alone on the machine; then the
# rest in two pytest processes side by side, one a core (many of them wait on budgets and
# on Meltano): those that run Meltano in this directory, and all the others.
pytest: $(VENV)/.installed $(MELTANO) $(DAGSTER) $(ORACLE)
	$(BIN)/pytest -m timing
	scripts/pytest-side-by-side.sh

# The oldest and newest Python that pyproject.toml claims (requires-python, classifiers):
# the fast unit tests in .venv-py310 and .venv-py313; a missing interpreter fails under
# CI=true (scripts/unit-pythons.sh says where it looks).
UNIT_PYTHONS ?= 3.10 3.13

unit-pythons:
	scripts/unit-pythons.sh $(UNIT_PYTHONS)

# make test: lint beside building the unit tests' environments (neither measures time),
# then the timing tests alone, then the rest side by side, the unit tests on 3.10 and 3.13
# starting on the core the first of those two processes leaves idle.
test: $(VENV)/.installed $(MELTANO) $(DAGSTER) $(ORACLE)
	scripts/unit-pythons.sh --build-only $(UNIT_PYTHONS) & build=$$!; \
		$(MAKE) --no-print-directory lint; lint=$$?; wait $$build && test $$lint -eq 0
	$(BIN)/pytest -m timing
	UNIT_PYTHONS="$(UNIT_PYTHONS)" scripts/pytest-side-by-side.sh

# The side-by-side benchmark (docs/benchmark.md): the tap against the raw floor,
# tap-rest-api-msdk and dlt, each tool in its own environment with pinned versions.
# Not part of `make test`: a full run takes several minutes.
BENCH := .venv-bench
BENCH_ARGS ?=
BUDGET_ARGS ?=

bench: $(VENV)/.installed $(BENCH)/tools/.installed $(BENCH)/msdk/.installed $(BENCH)/dlt/.installed
	$(BENCH)/tools/bin/python bench/compare.py $(BENCH_ARGS)
	$(BIN)/python bench/budgets.py $(BUDGET_ARGS)

# Per platform, the configured budget and the peak the server sees in any rolling second,
# for the sync alone and for --discover then the sync back to back (bench/budgets.py).
bench-budgets: $(VENV)/.installed
	$(BIN)/python bench/budgets.py $(BUDGET_ARGS)

$(BENCH)/%/.installed: bench/requirements-%.txt
	$(PYTHON) -m venv $(BENCH)/$*
	$(BENCH)/$*/bin/python -m pip install -q --upgrade pip
	$(BENCH)/$*/bin/python -m pip install -q -r $<
	touch $@

clean:
	rm -rf $(VENV) .venv-meltano $(DAGSTER_VENV) $(ORACLE_VENV) $(BENCH) .venv-py310 .venv-py313 .meltano output

# Two entry points on a fresh machine: `make demo` and `make test`.
# Each sets up the virtual environment first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test test-sqlite-store test-postgres-store lint serve

$(BIN)/pointsman: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/pointsman
	$(BIN)/pointsman demo

# The whole suite with a SQLite metadata store, then the API and end-to-end
# tests again with a PostgreSQL metadata store.
test: $(BIN)/pointsman lint test-sqlite-store test-postgres-store

test-sqlite-store: $(BIN)/pointsman
	$(BIN)/pytest

test-postgres-store: $(BIN)/pointsman
	POINTSMAN_TEST_STORE=postgres $(BIN)/pytest tests/api tests/e2e

lint: $(BIN)/pointsman
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src

serve: $(BIN)/pointsman
	$(BIN)/pointsman serve

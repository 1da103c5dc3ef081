# Spread: `make run` starts the demo node, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIND ?= 127.0.0.1:8000
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/spread
PYTEST_ARGS ?=
export DEBUG ?= 1

SOAK_SECONDS ?= 300

.PHONY: run test test-sqlite test-postgres test-faults soak check bench install dev clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
dev: $(VENV)/.dev

run: $(VENV)/.runtime
	$(PY) manage.py migrate --verbosity 0
	$(PY) manage.py spread_admin --url http://$(BIND)/admin/
	$(PY) manage.py spread_node --bind $(BIND)

test: test-sqlite test-postgres

test-sqlite: $(VENV)/.dev
	$(PY) -m pytest $(PYTEST_ARGS)

# PostgreSQL pass: the same suite against PostgreSQL; skipped with a reason when no server answers,
# unless SPREAD_REQUIRE_SERVICES is set (CI), where a missing server fails the run.
test-postgres: $(VENV)/.dev
	@if $(PY) -m tests.services postgres "$(POSTGRES_URL)"; then \
		DATABASE_URL="$(POSTGRES_URL)" $(PY) -m pytest $(PYTEST_ARGS); \
	elif [ -n "$$SPREAD_REQUIRE_SERVICES" ]; then \
		echo "PostgreSQL is required (SPREAD_REQUIRE_SERVICES) but $(POSTGRES_URL) does not answer"; exit 1; \
	else \
		echo "SKIPPED the PostgreSQL pass: no server answers at $(POSTGRES_URL)"; \
	fi

# Fault injection alone (kill -9, database and Redis outages, network cuts, a full disk); the same
# tests also run within `make test`, once per database.
test-faults: $(VENV)/.dev
	$(PY) -m pytest tests/faults $(PYTEST_ARGS)

# Bounded soak: mixed load for SOAK_SECONDS (default 5 minutes), then its checks and figures.
soak: $(VENV)/.dev
	$(PY) -m bench.soak --seconds $(SOAK_SECONDS)

check: $(VENV)/.dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy spread_core spread_api spread_history spread_project

# Every benchmark suite side by side with its baselines and peers (about 10 minutes); charts into
# docs/bench. `python -m bench --help` for suites and options.
bench: $(VENV)/.dev
	$(PY) -m bench

clean:
	rm -rf $(VENV) db.sqlite3* test_db.sqlite3* .secret_key

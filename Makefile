PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run demo test lint typecheck unit clean

setup: $(BIN)/apprefer

$(BIN)/apprefer: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: setup
	$(BIN)/apprefer dev

# The same with the project's fakes of every network: the README's walk-through ends in a delivered purchase.
demo: setup
	$(BIN)/apprefer dev --fake-networks

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy shared services

test: lint typecheck
	$(BIN)/pytest -q -rs -p no:cacheprovider

unit: setup
	$(BIN)/pytest -q -rs -p no:cacheprovider tests/unit

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# SIGKILL chaos through the whole pipeline (tests/chaos); `make test` runs the same test with 2,000 events.
.PHONY: chaos
chaos: setup
	APPREFER_CHAOS_EVENTS=$${APPREFER_CHAOS_EVENTS:-20000} $(BIN)/pytest -q -p no:cacheprovider -s tests/chaos

# Benchmarks against real processes (docs/benchmarks.md); BENCH_ARGS="--only gateway --no-profile" etc.
.PHONY: bench
bench: setup
	@command -v wrk >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
	@test -x $(BIN)/py-spy || $(BIN)/pip install --quiet py-spy
	$(BIN)/python -m bench $(BENCH_ARGS)

# Two commands: `make demo` and `make test`. Both set everything up on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/broker demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -n 2 -q -m "not soak and not fuzz_long"

# The long variants of the crash and concurrency tests (issue 8): 150 kills with bigger
# batches, and five minutes of 16 clients; tune with ACCORD_SOAK_KILLS, ACCORD_SOAK_SECONDS.
.PHONY: soak
soak: $(STAMP)
	ACCORD_SOAK=1 $(BIN)/pytest -q -s -m soak tests/functional/test_crash_recovery.py tests/functional/test_concurrency.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Hostile input, the long way (tests/fuzz): 2,000 schemathesis cases per operation on
# SQLite and on PostgreSQL, ten times the parser examples. `make test` runs the short form.
.PHONY: fuzz
fuzz: $(STAMP)
	ACCORD_FUZZ=1 $(BIN)/pytest -q -p no:randomly -s tests/fuzz

# One-command set-up: `make test` and `make demo` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest compat demo demo-flask bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

# Starlette's and Flask's own session tests against statemw (docs/compat.md); STORE=diskcache or
# STORE=redis://127.0.0.1:6379/0 runs them on another backend
compat: $(STAMP)
	$(BIN)/python compat/run.py --store $(or $(STORE),memory) --check compat/expected.json

demo: $(STAMP)
	$(BIN)/python -m examples.starlette_app

demo-flask: $(STAMP)
	$(BIN)/python -m examples.flask_app

bench: $(STAMP)
	$(BIN)/python bench/growth.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

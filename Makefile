# One-command set-up: `make test` and `make demo` create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest browser compat demo demo-flask bench clean

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

pytest: $(STAMP) browser
	$(BIN)/pytest

# The browser tests drive Debian's chromium (Playwright, executable_path): installed here when
# we are root with apt-get, as .ci/run does. Where it cannot be, they skip with the reason
# (under CI=true they fail instead).
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x "$(CHROMIUM)" ] && ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq chromium >/dev/null; } \
	      || echo "could not install chromium: the browser tests will skip"; \
	  else \
	    echo "no chromium and no way to install it (needs root and apt-get): browser tests skip"; \
	  fi; \
	fi

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

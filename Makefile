# `make serve` and `make test` work on a fresh machine: they create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

export CONNEX_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test
export CONNEX_TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: install serve test services lint bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $(INSTALLED)

install: $(INSTALLED)

serve: $(INSTALLED)
	$(BIN)/connex serve

services:
	./scripts/ensure-services
	./scripts/ensure-browser

test: $(INSTALLED) services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check connex schema rest_compat workers tests bench

bench: $(INSTALLED) services
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var

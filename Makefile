# mnist-serve developer commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data

.PHONY: install train test lint test-docker run fuzz

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/activate

install: $(BIN)/activate

## train a model from MNIST IDX files / a Kaggle CSV / an .npz and publish it into ./models
train: install
	$(BIN)/python -m trainer train --data $(DATA) --models-dir models

## the whole stack without Docker (private redis-server, first model, API on :8000, a worker); Ctrl-C stops it.
## Settings from the environment, e.g.  make run DATA_DIR=~/mnist API_PORT=8080 WORKERS=2
## exec: make's child is the launcher itself, which also watches make, because make keeps a
## SIGINT to its own pid and waits: kill -INT/-TERM of make's pid then stops everything too.
run:
	exec deploy/run-local

lint: install
	$(BIN)/ruff check .

## the whole default test suite: lint, then pytest (starts its own redis-server and gunicorn)
test: lint
	$(BIN)/pytest -m "not docker"

## the long schemathesis run against the real stack: 300 s, at least 5,000 cases (the default suite
## runs the same test for 60 s); FUZZ_SEED=<n> for another seed
fuzz: install
	FUZZ_SECONDS=300 FUZZ_MIN_CASES=5000 $(BIN)/pytest tests/api/test_fuzz.py -s

## docker-compose end-to-end test (needs a Docker engine, e.g. ../shared/tools/docker-sandbox);
## pytest's exit 5 (no test collected) is not a failure
test-docker: install
	$(BIN)/pytest -m docker || [ $$? -eq 5 ]

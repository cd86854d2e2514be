# mnist-serve developer commands. Every target creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data

.PHONY: install install-runtime lock proto vendor-swagger-ui train test test-fast lint contracts test-docker run fuzz

# Installs come from the hashed lock files in requirements/: the service's runtime.txt (make run,
# and deploy/Dockerfile), then the project itself without dependencies; make install adds the test
# extra from test.txt (the tests, lint and lock tools). pip check fails the install when
# pyproject.toml asks for something the lock does not hold: run make lock then.
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
$(RUNTIME_STAMP): pyproject.toml requirements/runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements/runtime.txt
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip check
	touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements/test.txt
	$(BIN)/pip install -q --require-hashes -r requirements/test.txt
	$(BIN)/pip check
	touch $@

## the service's dependencies only (what make run needs)
install-runtime: $(RUNTIME_STAMP)

## the service's and the tests' dependencies
install: $(TEST_STAMP)

# uv alone, hash-checked from the lock: make lock must also run where make install fails, i.e. while
# pyproject.toml asks for versions the lock does not have. make install brings it as well.
$(BIN)/uv:
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	awk '/^uv==/ {p = 1; print; next} p && /^[^ #]/ {exit} p' requirements/test.txt > $(VENV)/uv-lock.txt
	$(BIN)/pip install -q --no-deps --force-reinstall --require-hashes -r $(VENV)/uv-lock.txt

## regenerate the lock files after a change to pyproject.toml's dependencies, keeping every pin that
## still fits (add --upgrade to the two commands to move them all to the newest the ranges allow).
## For Python 3.11 on Linux, as deploy/Dockerfile and CI run; runtime.txt takes test.txt's versions.
## The bench extra (torch) stays out of both; bench.peers installs the peers in .venv-peers/.
LOCK := $(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --python-platform linux
lock: $(BIN)/uv
	$(LOCK) --extra test -o requirements/test.txt
	$(LOCK) -c requirements/test.txt -o requirements/runtime.txt
	sed -i '1i # mnist-serve runtime + test extra, hashed (make install). Regenerate both files with make lock; this one:' \
	    requirements/test.txt
	sed -i '1i # mnist-serve runtime dependencies, hashed (deploy/Dockerfile). Regenerate both with make lock; this one:' \
	    requirements/runtime.txt

## regenerate the gRPC modules from service/protocols/grpc_v2/grpc_predict_v2.proto (grpcio-tools from the
## lock; the modules it writes are committed, and refuse a grpcio or protobuf older than their generator's)
proto: install
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
	    service/protocols/grpc_v2/grpc_predict_v2.proto

## refresh the vendored Swagger UI (served at /docs, never from a CDN) from the npm registry:
## npm checks the tarball against the registry's sha512; the files land in the console's static folder
SWAGGER_UI := 5.32.0
SWAGGER_UI_DIR := service/console/static/vendor/swagger-ui
vendor-swagger-ui:
	rm -rf .swagger-ui && mkdir .swagger-ui
	cd .swagger-ui && npm pack --silent swagger-ui-dist@$(SWAGGER_UI) && tar xzf swagger-ui-dist-$(SWAGGER_UI).tgz
	rm -rf $(SWAGGER_UI_DIR) && mkdir -p $(SWAGGER_UI_DIR)
	cd .swagger-ui/package && cp swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE \
	    $(CURDIR)/$(SWAGGER_UI_DIR)/
	echo "swagger-ui-dist $(SWAGGER_UI) from the npm registry (make vendor-swagger-ui)" > $(SWAGGER_UI_DIR)/VERSION
	rm -rf .swagger-ui

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

## the whole default test suite: lint, then pytest (it starts its own redis-server, gunicorn, workers,
## nginx and Chromium); the slowest 30 tests are listed at the end. Two pytest processes (xdist): most of
## the suite waits on servers and workers, so two share two cores well (8 min in one, under 6 in two);
## every test starts its own servers on free ports, so none depends on which process runs it.
## TEST_PROCESSES=0 runs it in this process (for pdb, or -x).
TEST_PROCESSES ?= 2
test: lint
	$(BIN)/pytest -m "not docker" -n $(TEST_PROCESSES) --durations=30

## the edit loop: the tests that start no server (the network and its gradient checks, datasets,
## registry, codecs, schemas, the app in process); about a minute, in one process (it is CPU-bound:
## a second one gains nothing on two cores)
test-fast: install
	$(BIN)/pytest -m "not servers and not docker" -q

## the contract tests (tests/contracts) at both ends of pyproject.toml's ranges: in .venv-floor, rebuilt
## with every dependency at its floor, then in .venv (the lock); CI runs it after make test
contracts: install
	.ci/contracts

## the long schemathesis run against the real stack: 300 s, all phases (the default suite runs the same
## test for 60 s; CI runs both); FUZZ_SEED=<n> for another seed
fuzz: install
	FUZZ_SECONDS=300 $(BIN)/pytest tests/api/test_fuzz.py -s

## docker-compose end-to-end test (needs a Docker engine, e.g. ../shared/tools/docker-sandbox);
## pytest's exit 5 (no test collected) is not a failure
test-docker: install
	$(BIN)/pytest -m docker || [ $$? -eq 5 ]

# Masklet: `make run` serves the demo on http://127.0.0.1:8000, `make test` runs every test.
# Both set everything up on a fresh machine: .venv in the repository root, the frontend
# bundle, the database. Postgres/Redis are used when DATABASE_URL / REDIS_URL are set.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
INSTALLED := $(VENV)/.installed
FRONTEND_BUILT := frontend/dist/.built
PROTOCOL_SCHEMA := frontend/src/generated/protocol.schema.json
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# pytest-xdist processes for `make test` (0: one process). Three on two cores: most of a browser or
# live-server test is waiting on another process, so a third overlaps those waits. Services mode runs
# in one process: the test databases are per worker, but Redis (queues, channel groups, cache keys)
# would be shared.
TEST_WORKERS ?= $(if $(REDIS_URL),0,3)

.PHONY: run test install frontend lint bench clean

run: install frontend
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py seed_demo
	$(PY) manage.py bootstrap_admin
	@# SAM 2.1 tiny once, while no model version is registered (MASKLET_FETCH_MODEL=0: never); offline this
	@# is one line saying the classical fallback serves, and serving goes on.
	@if [ "$${MASKLET_FETCH_MODEL:-1}" != 0 ]; then \
		$(PY) manage.py fetch_model sam2.1_hiera_tiny --promote --auto --timeout 5 || true; fi
	@echo "Masklet (embedded mode) on http://$(HOST):$(PORT)/"
	$(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: install frontend
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

install: $(INSTALLED)

# torch + torchvision first: sam2 is an sdist compiled against the installed torch. Then the API
# client and its `masklet` command (client/), editable so a checkout's changes need no reinstall.
$(INSTALLED): requirements.txt client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet $$(grep -E '^(torch|torchvision)==' requirements.txt)
	SAM2_BUILD_CUDA=0 $(PIP) install --quiet --no-build-isolation -r requirements.txt
	$(PIP) install --quiet --no-build-isolation -e client
	touch $@

frontend: $(FRONTEND_BUILT)

# The socket protocol's JSON Schema, written from engine/protocol.py's models; `npm run build` generates
# frontend/src/generated/protocol.ts from it (both committed: the Docker image builds without Python).
$(PROTOCOL_SCHEMA): engine/protocol.py | $(INSTALLED)
	$(PY) -m engine.protocol --json-schema > $@.tmp && mv $@.tmp $@

$(FRONTEND_BUILT): $(PROTOCOL_SCHEMA) frontend/package.json frontend/package-lock.json $(shell find frontend/src -type f 2>/dev/null)
	cd frontend && npm ci --no-audit --no-fund && npm run build
	touch $@

lint: install frontend
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports  # the layers contract in pyproject.toml (docs/ARCHITECTURE.md)
	cd frontend && npm run typecheck

bench: install
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist

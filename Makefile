# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format frontend frontend-check test-deps pytest bench bench-refresh bench-conferences bench-bot bench-load secrets clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

.env: | setup
	$(PY) scripts/make_env.py .env

secrets: setup ## print fresh secrets for a production .env
	$(PY) scripts/make_env.py --print-production

demo: setup .env ## the app inside the local sandbox portal; prints the URL to open
	$(PY) scripts/demo.py

test-deps: ## what the tests need besides Python packages (Chromium for the browser tests)
	bash scripts/install_test_deps.sh

lint: setup ## ruff check (unused noqa flagged: RUF100) and the house format
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

frontend: ## rebuild the committed bundle in static/dist
	cd frontend && npm ci --no-audit --no-fund && npm run build && npm run size

frontend-check: frontend ## CI: the committed bundle must match the sources
	git diff --exit-code --stat -- static/ || (echo "static/ is stale: run 'make frontend' and commit" && exit 1)
	test -z "$$(git status --porcelain -- static/)" || (git status --porcelain -- static/; echo "untracked files in static/: run 'make frontend' and commit"; exit 1)

pytest: setup
	$(PY) -m pytest

test: setup test-deps lint frontend-check pytest

# Benchmarks print figures and ratios measured in one run (bench/README.md); never part of `make test`.
bench: bench-refresh bench-conferences bench-bot

bench-refresh: setup
	$(PY) bench/refresh.py

bench-bot: setup
	$(PY) bench/bot_ingest.py

bench-conferences: setup
	$(PY) bench/conferences.py

bench-load: setup ## 200 locust users for 60 s at gunicorn.conf.py (not part of `make bench`: it takes ~2 min)
	$(PY) bench/load.py

clean:
	rm -rf $(VENV) frontend/node_modules .pytest_cache .ruff_cache

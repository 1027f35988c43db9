# spamsift: `make run` serves everything, `make test` runs the whole suite.
# Both create .venv and install into it; nothing outside .venv and ./var is touched except
# by scripts/system-deps.sh (test only: pgvector for the local PostgreSQL, chromium,
# docker-compose).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-load services sample clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned exactly: a looser pin pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[ml,dev]'
	touch $(STAMP)

install: $(STAMP)

services: install
	$(BIN)/spamsift up

sample: services
	$(BIN)/spamsift sample

run: sample
	# A first model so verdicts come at once; it trains as soon as the worker starts.
	$(BIN)/spamsift train baseline --if-no-model
	$(BIN)/spamsift run

# The suite chooses its servers (tests/conftest.py): SPAMSIFT_TEST_DATABASE_URL and
# SPAMSIFT_TEST_BROKER_URL when set, else this machine's on their usual ports when they
# answer, else PostgreSQL and Redis of its own. So nothing is pinned here.
test: install
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Minutes long, so not in `make test` (pyproject.toml's testpaths leave tests/load out).
test-load: install
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest tests/load $(PYTEST_ARGS)

clean:
	-$(BIN)/spamsift down
	rm -rf $(VENV) var

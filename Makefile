# Redline: `make run` serves the console and API with demo data; `make test` runs the suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint services stop-services clean-state venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@python=$$(scripts/find-python.sh) && \
	  if command -v uv >/dev/null 2>&1; then \
	    UV_PYTHON_DOWNLOADS=never uv venv --quiet --allow-existing --python "$$python" $(VENV) && \
	    UV_PYTHON_DOWNLOADS=never VIRTUAL_ENV=$(VENV) uv pip install --quiet --compile-bytecode --python $(PY) -e . --group dev; \
	  else \
	    "$$python" -m venv $(VENV) && $(PY) -m pip install --quiet --upgrade pip && \
	    $(PY) -m pip install --quiet -e . --group dev; \
	  fi
	@touch $(STAMP)

services:
	@scripts/services.sh start

stop-services:
	@scripts/services.sh stop

run: venv
	@scripts/run.sh

test: venv services
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: venv services
	@$(PY) scripts/bench.py

# The rollout benchmark (tests/bench): 500 webhook deployments, one worker of 2 processes.
.PHONY: bench-rollout
bench-rollout: venv services
	@REDLINE_BENCH=1 $(VENV)/bin/pytest tests/bench/test_rollout_bench.py -q -s

bench: bench-rollout

lint: venv
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean-state: stop-services
	rm -rf .state

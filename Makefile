# One entry point. `make run` starts the embedded stack; `make test` runs every check CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev,dev-stack]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/tidings dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -q

bench: install
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .tidings .mypy_cache .ruff_cache .pytest_cache

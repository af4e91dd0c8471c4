# One entry point. `make run` starts the embedded stack; `make test` runs every check CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Every package pinned: lock.txt is what the production image installs, lock-dev.txt adds the
# dev and dev-stack extras (with the same pins) for `make run`, `make test` and CI. `make lock`
# refreshes both from pyproject.toml's ranges (UPGRADE=1: move every pin to the newest allowed).
LOCK := requirements/lock.txt
LOCK_DEV := requirements/lock-dev.txt
COMPILE := $(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 \
	--custom-compile-command "make lock" --quiet $(if $(UPGRADE),--upgrade)

.PHONY: install run test lint bench lock clean

$(STAMP): pyproject.toml $(LOCK_DEV)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -r $(LOCK_DEV)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
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

lock: install
	$(COMPILE) -o $(LOCK)
	$(COMPILE) --extra dev --extra dev-stack -c $(LOCK) -o $(LOCK_DEV)

bench: install
	$(PY) bench/throughput.py

clean:
	rm -rf $(VENV) .tidings .mypy_cache .ruff_cache .pytest_cache

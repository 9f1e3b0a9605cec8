# chatrelay: `make install`, `make dev`, `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install dev test soak lint clean

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml layers/chatrelay/requirements.txt requirements/provided-by-lambda.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

dev: install
	$(PY) -m chatrelay.local.devstack

test: install
	$(PY) -m pytest -m "not soak"

soak: install
	LOAD_CLIENTS=$${LOAD_CLIENTS:-1000} $(PY) -m pytest tests/functional/test_load_and_faults.py -s -q

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache

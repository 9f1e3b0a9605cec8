# chatrelay: `make install`, `make dev`, `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
# sam build needs the functions' runtime (python3.12) on PATH; pyenv machines have one.
PYENV_ROOT ?= $(or $(shell pyenv root 2>/dev/null),$(HOME)/.pyenv)
PY312_BIN := $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/3.12*/bin))),$(patsubst %/,%,$(dir $(shell command -v python3.12 2>/dev/null))))
# Stand-in for what the Lambda runtime provides (boto3), for tests of the built artifacts.
LAMBDA_RUNTIME_DIR := .tools/lambda-runtime

.PHONY: install system-packages dev test soak build bench bench-quick lint clean

install: system-packages $(VENV)/.installed node_modules/.installed

# Java 17 runs DynamoDB Local; Debian's chromium runs the browser tests (Playwright cannot
# download browsers here); openssl makes the TLS tests' certificate. Installed only when missing
# (apt needs root).
system-packages:
	@command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }
	@command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

$(VENV)/.installed: pyproject.toml layers/chatrelay/requirements.txt requirements/provided-by-lambda.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

dev: install
	$(PY) -m chatrelay_dev.local.devstack

# pytest first: it also records the real server responses the mini-program kit's tests replay.
test: install
	$(PY) -m pytest -m "not soak"
	node --test clients/miniprogram/test/

build: $(SAM) $(LAMBDA_RUNTIME_DIR)/.installed
	@test -n "$(PY312_BIN)" || { echo "python3.12 is required for sam build"; exit 1; }
	# cfn-lint for a commercial region and both China regions (the partition changes what exists).
	for region in us-east-1 cn-north-1 cn-northwest-1; do \
	    SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --region $$region || exit 1; done
	PATH="$(PY312_BIN):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM) build
	# pydantic.v1 (the legacy API) is not shipped: nothing in the layer uses it, but FastAPI imports
	# it (~11 ms of every cold start) as soon as a route has a parameter, only to check that the
	# parameter's model is not a v1 one; without it FastAPI's check answers "not v1" (its own fallback).
	rm -rf .aws-sam/build/ChatRelayLayer/python/pydantic/v1
	# Nor httpx's command-line client (httpx/_main.py): it cannot run here (httpx[cli] is not
	# installed), yet importing httpx tried it and imported click (~5 ms of the API function's
	# cold start; the streaming function's uvicorn imports click anyway) before httpx fell back.
	rm -f .aws-sam/build/ChatRelayLayer/python/httpx/_main.py
	# Ship the layer (our package and every dependency) and the functions' own code with
	# bytecode: /opt and /var/task are read-only, so without it every cold start compiles the
	# sources again (bench/results/report.md). unchecked-hash: valid whatever the mtimes the
	# zip gives the files. python3.12: the functions' runtime (bytecode is per Python version).
	$(PY312_BIN)/python3.12 -m compileall -q -j 0 --invalidation-mode unchecked-hash \
	    .aws-sam/build/ChatRelayLayer/python .aws-sam/build/StreamFunction .aws-sam/build/ApiFunction

$(SAM):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli

$(LAMBDA_RUNTIME_DIR)/.installed:
	$(PY312_BIN)/python3.12 -m pip install -q --target $(LAMBDA_RUNTIME_DIR) boto3
	touch $@

soak: install
	LOAD_CLIENTS=$${LOAD_CLIENTS:-1000} LOAD_MAX_PROCESS_STREAMS=$${LOAD_MAX_PROCESS_STREAMS:-300} \
		$(PY) -m pytest tests/functional/test_load_and_faults.py -s -q

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	touch $@

# LiteLLM proxy, a baseline of make bench, in a venv of its own (its dependencies would clash with ours).
LITELLM_VENV := .tools/litellm
LITELLM_SPEC ?= litellm[proxy]==1.108.7
$(LITELLM_VENV)/.installed:
	$(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q --upgrade pip
	$(LITELLM_VENV)/bin/pip install -q '$(LITELLM_SPEC)'
	touch $@

# Benchmarks (bench/run.py): a full run writes bench/results/report.md and PNG plots, with the
# hand-written relay and LiteLLM proxy as baselines. bench-quick (CI) skips LiteLLM: installing it
# takes about a minute.
bench: install $(VENV)/.bench-installed $(LITELLM_VENV)/.installed
	$(PY) bench/run.py

bench-quick: install $(VENV)/.bench-installed
	$(PY) bench/run.py --quick

# ruff, configured in pyproject.toml ([tool.ruff]); CI runs it.
lint: install
	$(PY) -m ruff check layers devtools tests bench functions

clean:
	rm -rf $(VENV) node_modules .aws-sam .pytest_cache

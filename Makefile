# The two commands a newcomer types: `make plan` (offline plan of every stack) and `make test`.
# Each installs what it needs: `make plan` the virtualenv at .venv/ from requirements.txt (the plan and the Pulumi
# program, under a minute on 2 cores) and this project, editable; `make test` adds requirements-dev.txt (the tests, moto,
# Ray for the lab) and the Debian packages the lab needs (root only; see scripts/install_lab_deps.sh).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
DEV_STAMP := $(VENV)/.requirements-dev.stamp
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.requirements.stamp

.PHONY: plan test lint lab-deps bench venv venv-checkov clean check-references check-vllm

plan: $(STAMP)
	$(PY) -m scripts.plan

# Online: does every external name in planner/references.py still exist, is a newer version out (docs/references.md)
check-references: $(STAMP)
	$(PY) -m scripts.check_references

# Against the real vLLM (docs/vllm-check.md), NOT part of `make test`: the rendered argv, env and API-key middleware
# checked by vLLM's own parser and registries (the target release's sources, then the installed CPU build), then a
# real CPU server on loopback with a tiny local model. Its own virtualenv .venv-vllm/ (about 4 GB, ~3 min to build).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.requirements.stamp

check-vllm: $(VLLM_STAMP)
	@status=0; \
	$(VLLM_VENV)/bin/python -m scripts.check_vllm || status=1; \
	$(VLLM_VENV)/bin/python -m scripts.check_vllm --installed || status=1; \
	$(VLLM_VENV)/bin/python -m pytest tests_vllm -p no:cacheprovider || status=1; \
	exit $$status

$(VLLM_STAMP): requirements-vllm.txt requirements-vllm-source.txt scripts/install_vllm_venv.sh
	PYTHON=$(PYTHON) VLLM_VENV=$(VLLM_VENV) bash scripts/install_vllm_venv.sh

test: $(DEV_STAMP) lab-deps lint $(CHECKOV_STAMP)
	$(PY) -m pytest

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

lab-deps:
	bash scripts/install_lab_deps.sh

bench: $(DEV_STAMP) lab-deps
	$(PY) -m scripts.spark_link_bench --serial
	$(PY) -m scripts.stage_weights.bench

venv: $(STAMP)

# checkov, which tests/eks/test_checkov.py runs over the rendered EKS manifests, in a virtualenv of its own: it pins
# boto3 exactly, and not to requirements.txt's boto3 (requirements-checkov.txt).
venv-checkov: $(CHECKOV_STAMP)

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# pip, less its notes about find-links folders a machine's pip config names but does not have
PIP_QUIET = 2> >(grep -v "^WARNING: Location 'file:" >&2)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt $(PIP_QUIET)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e . $(PIP_QUIET)
	touch $@

$(DEV_STAMP): requirements-dev.txt $(STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt $(PIP_QUIET)
	touch $@

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache

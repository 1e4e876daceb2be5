# The two commands a newcomer types: `make plan` (offline plan of every stack) and `make test`.
# Each installs what it needs: the virtualenv at .venv/ from requirements.txt (DESIGN.md contract) and, for the
# tests, the Debian packages the lab needs (root only; see scripts/install_lab_deps.sh).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp

.PHONY: plan test lint lab-deps bench venv clean check-references

plan: $(STAMP)
	$(PY) -m scripts.plan

# Online: does every external name in planner/references.py still exist, is a newer version out (docs/references.md)
check-references: $(STAMP)
	$(PY) -m scripts.check_references

test: $(STAMP) lab-deps lint
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

lab-deps:
	bash scripts/install_lab_deps.sh

bench: $(STAMP) lab-deps
	$(PY) -m scripts.spark_link_bench --serial

venv: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

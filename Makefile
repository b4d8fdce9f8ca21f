# Quick start: `make demo` (train + evaluate OAML on SynthFace), `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install lint test demo

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q -e ".[tests]"

# ruff (pycodestyle + pyflakes at 100 columns, ruff.toml) and isort (setup.cfg).
lint: install
	$(PY) -m ruff check .
	$(PY) -m isort --check-only --diff .

# The test suite and the docstring examples of the package (pytest.ini collects both).
test: lint
	$(PY) -m pytest -q

# Extra options, e.g. make demo DEMO_ARGS="--seed 1 --with-noocc" (tools/demo_synthface.py -h).
DEMO_ARGS ?=

demo: install
	$(PY) tools/demo_synthface.py $(DEMO_ARGS)

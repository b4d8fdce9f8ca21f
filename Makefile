# Quick start: `make demo` (train + evaluate OAML on SynthFace), `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(PY)
	$(PY) -m pip install -q -e ".[tests]"

test: install
	$(PY) -m pytest -q tests

# Extra options, e.g. make demo DEMO_ARGS="--seed 1 --with-noocc" (tools/demo_synthface.py -h).
DEMO_ARGS ?=

demo: install
	$(PY) tools/demo_synthface.py $(DEMO_ARGS)

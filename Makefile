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

demo: install
	$(PY) tools/demo_synthface.py

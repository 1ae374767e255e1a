# The two commands of the README: `make demo` (set up, then run the training pipeline on this
# machine) and `make test`. Both create the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kfkit-installed

.PHONY: demo test test-fast compile bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kfkit run training --local

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not docker"

compile: $(STAMP)
	$(BIN)/kfkit compile --output build

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf build .kfkit .pytest_cache

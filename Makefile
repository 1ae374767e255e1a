# The two commands of the README: `make demo` (set up, then run the training pipeline on this
# machine) and `make test`. Both create the virtual environment when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kfkit-installed

.PHONY: demo test test-fast test-local mutation compile bench clean lock

$(STAMP): pyproject.toml ci/locks/dev.txt
	VENV=$(VENV) PYTHON=$(PYTHON) ci/install.sh
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kfkit run training --local

# everything, the image tests included (they start a Docker engine with containers/local-engine.sh)
test: $(STAMP)
	$(BIN)/python -m pytest -q

# unit tests only: no kfp.local runs, no images
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not docker"

# everything but the image tests
test-local: $(STAMP)
	$(BIN)/python -m pytest -q -m "not docker"

# planted bugs the tests must catch: kill ratio per core module (docs/testing.md); not part of `make test`
mutation: $(STAMP)
	$(BIN)/python ci/mutation.py

# re-resolve every dependency into ci/locks/ (hashes included) after changing pyproject.toml
lock:
	ci/lock.sh

compile: $(STAMP)
	$(BIN)/kfkit compile --output build

bench: $(STAMP)
	for b in ingest train serve soak monitor monitor_guard batch_predict pipeline tune canary; do $(BIN)/python benchmarks/$$b.py; done

clean:
	rm -rf build .kfkit .pytest_cache

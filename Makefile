# One place for the commands the README gives. Both create a private virtualenv
# in .venv with the Python found on PATH (3.11 or newer) and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test install demo bench clean interop

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "need Python >= 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'

test: install
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

# only the interop tests against Go programs (go-data-transfer, Lassie; also
# part of `make test`); here a missing Go toolchain fails instead of skipping
interop: install
	INTEROP_REQUIRE_GO=1 $(BIN)/python -m pytest -q tests/test_interop_go.py tests/test_interop_go2.py tests/test_interop_lassie.py

# the main job: two nodes on loopback, a real transfer, progress shown
demo: install
	$(BIN)/datatransfer demo

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info

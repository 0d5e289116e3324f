# The two commands of the README: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench-ingest gpu-wheels clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first: a CPU build where one is available locally, not a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

DEMO_DIR ?= demo-output
demo: $(STAMP)
	rm -rf $(DEMO_DIR)
	$(BIN)/citab demo --dir $(DEMO_DIR)
	$(BIN)/citab info --project $(DEMO_DIR)/project
	@echo "Open $(DEMO_DIR)/project/page/index.html in a browser: the whole project on one page."

bench-ingest: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

# Wheels a GPU machine without citab's dependencies needs for benchmarks/gpu_run.sh (Python 3.12,
# x86_64): pydantic and what it pulls, about 3 MB. Carry .gpu-wheels/ to the GPU machine.
GPU_PYTHON ?= 3.12
gpu-wheels: $(STAMP)
	$(BIN)/pip download --quiet --only-binary=:all: --python-version $(GPU_PYTHON) \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .gpu-wheels pydantic

clean:
	rm -rf $(VENV) demo-output .pytest_cache

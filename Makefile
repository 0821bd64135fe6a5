# The two set-up commands: `make demo` runs the main job on the built-in default,
# `make test` runs the test suite. Each installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data demo test bench lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

data:
	@if [ ! -f $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q dataset-fashion-mnist; \
	  else echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'" >&2; exit 1; fi; \
	fi

demo: setup data
	$(VENV)/bin/nastools demo

test: setup data
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# lint: ruff's rules and the formatter's layout (configured in pyproject.toml); format: apply the layout
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .

# bench: the benchmarks behind the README's measured results, each with the arguments its
# figures were made with (`benchmarks/run.py --list` prints them; BENCH="bench_search bench_export"
# runs only those), then benchmarks/results/INDEX.md is regenerated
bench: setup data
	$(PY) benchmarks/run.py $(BENCH)
	$(PY) benchmarks/index.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

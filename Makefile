# The two set-up commands: `make demo` runs the main job on the built-in default,
# `make test` runs the test suite. Each installs what it needs first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data demo test bench lint format clean gpu-check

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
	$(VENV)/bin/ruff format --check .
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

# gpu-check: every GPU path on a small space in one call (at most 8 minutes), one JSON report in
# benchmarks/results/gpu_check/<cpu-tag>/<date>.json (python -m nastools.gpucheck --help). It runs with
# the host's own Python when its torch sees a CUDA GPU (a GPU host often brings its own torch and
# no package registry, and the Docker image has no venv), else with the venv's where there is one;
# nothing is installed. On a host without a CUDA GPU it prints one line and exits 0.
GPU_PY ?= $(shell $(PYTHON) -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null && echo $(PYTHON) || echo $(if $(wildcard $(PY)),$(PY),$(PYTHON)))

GPU_REPORT = $(shell PYTHONPATH=$(CURDIR) $(GPU_PY) -c 'import sys; sys.path.insert(0, "benchmarks"); from _common import result_path; print(result_path("gpu_check"))')

gpu-check:
	@if $(GPU_PY) -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then \
	  PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY) -m nastools.gpucheck --out $(GPU_REPORT); \
	else PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY) -m nastools.gpucheck; fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Two commands for a new user: `make demo` and `make test`.  Both create .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LINT_VENV ?= .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test lint docs bench-throughput bench-latency bench-chaos bench-slurm bench-estimates bench-eta slurm-up clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, so that no other requirement pulls a different one.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[all,dev]"
	# CHGNet without its requirements: nvidia-ml-py3 would replace the pynvml module that
	# the NVML device backend and torch use (executors/families/chgnet.py).
	$(PY) -m pip install -q --no-deps chgnet==0.4.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m mofsim_cli demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# import-linter needs a newer rich than orb-models allows, so it gets its own small
# environment; it reads the sources and imports nothing of the project.
$(LINT_STAMP):
	python3 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install -q import-linter==2.17
	touch $(LINT_STAMP)

lint: $(STAMP) $(LINT_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(LINT_VENV)/bin/lint-imports

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs build/docs

bench-throughput: $(STAMP)
	$(PY) bench/throughput.py

bench-latency: $(STAMP)
	$(PY) bench/api_latency.py

# Needs root for the full-disk phase (a small tmpfs); without it that phase is skipped.
bench-chaos: $(STAMP)
	$(PY) bench/chaos.py --jobs 200 --kills 10 --full-disk

# Pilots on the local Slurm (make slurm-up first) against local cpu:N slots.
bench-slurm: $(STAMP)
	$(PY) bench/slurm_scale.py --jobs 500 --pilots 1,2,4

# Held-out errors of the memory and time estimates (SevenNet-0; SLOT=gpu0 for a GPU).
SLOT ?= cpu
bench-estimates: $(STAMP)
	$(PY) bench/estimates.py --slot $(SLOT)

bench-eta: $(STAMP)
	$(PY) bench/eta.py

# A single-node Slurm on this machine for the Slurm backend (root; see scripts/slurm-up).
slurm-up:
	scripts/slurm-up

clean:
	rm -rf $(VENV) $(LINT_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

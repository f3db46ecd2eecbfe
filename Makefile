# Two commands on a fresh machine: `make demo` (the quick reproduction) and `make test`;
# `make demo-cifar` adds the embedded CIFAR-10 subset to the same report.
# Each creates .venv when missing and installs the package with the pinned CPU torch
# and the ray extra (so the Ray executor's tests run too).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= results/quick

.PHONY: demo demo-cifar check test bench slow docs clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,ray]'
	touch $@

# The demos run the sweep's independent units in parallel, one CPU (and torch thread) each,
# on a private Ray instance with every CPU of this machine (docs/training.md: on two cores,
# about half the time of one process).
demo: $(BIN)/.installed
	$(BIN)/defdistill reproduce --dataset mnist --profile quick --out $(OUT) --executor ray

demo-cifar: $(BIN)/.installed
	$(BIN)/defdistill reproduce --dataset cifar10-subset --profile quick --out $(OUT) --executor ray

# The fast tier, between two edits: ruff, mypy and every test not marked slow or heavy (every
# module is covered; the trainings, real-data audits, Ray and the notebook run in `make test`),
# on two one-thread workers (pytest-xdist).
check: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2 -m "not slow and not heavy"

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest

slow: $(BIN)/.installed
	$(BIN)/python -m pytest -m slow

bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python -m pip install --quiet --no-deps torchattacks
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/attacks.py
	$(BIN)/python benchmarks/executors.py

# The API reference from the docstrings; --strict turns every warning (a broken link, a
# docstring griffe cannot parse) into a failure. NO_MKDOCS_2_WARNING silences Material's banner.
docs: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site

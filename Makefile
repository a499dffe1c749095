# The command interface. `make demo` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out/demo

.PHONY: demo test lint types pytest bench reproduce clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "gradtrace needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/gradtrace tour --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples notebooks
	$(BIN)/ruff format --check src tests benchmarks examples notebooks

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q

test: lint types pytest

# The papers' claims about the remedies, checked by runs made here (CPU protocol, < 15 min).
reproduce: $(STAMP)
	MPLBACKEND=Agg $(BIN)/gradtrace reproduce --out out/reproduce

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_curve.py
	$(BIN)/python benchmarks/bench_trace.py
	$(BIN)/python benchmarks/bench_monitor.py
	$(BIN)/python benchmarks/bench_explorer.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache

# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo quick test venv wheel-check clean

venv: $(VENV)/.installed

# torch first, pinned: this pin resolves to the CPU build on disk; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/chatir benchmark --config shapes_demo

# A first look at the same table on a sample of 200 of the 2,064 targets (wider intervals, other numbers).
quick: venv
	$(BIN)/chatir benchmark --config shapes_demo --num-targets 200 --out-dir runs/shapes_quick

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info runs

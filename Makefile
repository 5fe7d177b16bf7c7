# The front door. Every target installs what it needs from the lock file first.
PYTHON ?= python3.11
VENV := .venv
TOOLS := .tools
UV_VERSION := 0.13.8
UV := $(TOOLS)/bin/uv
BIN := $(VENV)/bin

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_NATIVE_TLS := 1
# Bytecode: the install compiles every installed package once, and Python may cache the
# bytecode of ours and of the tests (a PYTHONDONTWRITEBYTECODE in the environment would forbid
# it). The suite starts about a hundred Python processes (xdist workers, the CLI, Dagster,
# Jupyter kernels); without cached bytecode each one compiles Dagster, pandas and the rest from
# source again: measured, 14 s -> 6 s of CPU for one `pytest --collect-only`.
export UV_COMPILE_BYTECODE := 1
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install test test-under-load lint format demo notebook bench sim clean

install: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked --extra test --extra research --python $(PYTHON)
	touch $@

# Four pytest-xdist workers on two cores: most tests wait (on pacing, subprocesses, a server)
# more than they compute. A test file stays on one worker, so its module fixtures (a PostgreSQL
# server, a crash zygote) start once; files go out in collection order, the longest first
# (tests/conftest.py), not reordered by their number of tests.
TEST_WORKERS ?= 4
test: install lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The timing-sensitive tests again, with every core kept busy by CPU burners (CI runs this too).
test-under-load: install
	$(BIN)/python tests/under_load.py -q -m timing

lint: install
	$(BIN)/ruff check ib_pipeline assets tests bench
	$(BIN)/ruff format --check ib_pipeline assets tests bench
	$(BIN)/mypy
	$(BIN)/python -m ib_pipeline.dictionary --check

format: install
	$(BIN)/ruff check --fix ib_pipeline assets tests bench
	$(BIN)/ruff format ib_pipeline assets tests bench

demo: install
	$(BIN)/ib-pipeline demo
	$(BIN)/python -m ib_pipeline.notebook_report

# Jupyter on the research notebook, over the warehouse `make demo` loaded.
notebook: install
	cd notebooks && ../$(BIN)/jupyter lab research.ipynb

sim: install
	$(BIN)/ib-pipeline sim

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

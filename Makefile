# bioreg — `make help` lists the targets. Every Python command runs in the locked uv environment.
UV ?= uv
PY ?= $(UV) run --frozen python
RESULTS_DIR ?= results/runs
export PYTHONUNBUFFERED = 1

.PHONY: help install demo test test-fast lint format clean-outputs

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_.%-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-24s %s\n", $$1, $$2}'
	@echo "  table-<id>               one thesis table from the records (ids: 2.3-2.6 3.2 4.1-4.5 n3.1-n3.6 pp2-pp5)"
	@echo "  reproduce-table-<id>     train a table's runs, seeds 0-4 (LAUNCHER=basic|local|slurm)"

.venv/.bioreg-synced: pyproject.toml uv.lock
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen
	@touch $@

install: .venv/.bioreg-synced ## install the locked environment (uv sync --frozen)

demo: install ## train a small model on the bundled digits data, evaluate it and print the results (< 3 min on 2 CPU cores)
	$(PY) train.py +experiment=demo results_dir=results/demo on_existing=overwrite

# pytest-xdist workers of make test / test-fast (each test is single-threaded: tests/conftest.py)
TEST_JOBS ?= 2
_XDIST = $(if $(filter-out 0 1,$(strip $(TEST_JOBS))),-n $(strip $(TEST_JOBS)))

test: install ## run the whole test suite (CPU only; TEST_JOBS=2 pytest-xdist workers, 1 = one process)
	$(UV) run --frozen pytest $(_XDIST)

test-fast: install ## the tests that train nothing (-m "not slow"; about 2½ minutes on 2 CPU cores)
	$(UV) run --frozen pytest -m "not slow" $(_XDIST)

lint: install ## ruff check (CI runs it before the tests; .pre-commit-config.yaml runs it on commit)
	$(UV) run --frozen ruff check src tests scripts train.py

format: install
	$(UV) run --frozen ruff format src tests scripts train.py

clean-outputs: ## remove Hydra output folders (not records, not checkpoints)
	rm -rf outputs multirun

# parts of the project add their targets here (tables, figures, benchmarks, sweeps)
-include mk/*.mk

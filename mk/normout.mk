# NormOut (Singh 2023): activation-statistics figures (Figs 3.1-3.10 style) from the run records.
#   make figures-normout RESULTS_DIR=results/runs [FIG_DIR=results/figures]
PY ?= uv run python
RESULTS_DIR ?= results/runs
FIG_DIR ?= results/figures
NORMOUT_FIG_POINTS ?= 48 51

.PHONY: figures-normout
figures-normout: ## activation statistics over training (Singh Figs 3.1-3.10) from the records in RESULTS_DIR
	$(PY) scripts/fig_activation_stats.py --results-dir $(RESULTS_DIR) --out $(FIG_DIR) --points $(NORMOUT_FIG_POINTS)

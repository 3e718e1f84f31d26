# Dutta (2019) Ch. 3: the activation-correlation analysis of the three VGG-11 networks (Table 3.2,
# Figures 3.2-3.7; docs/correlation_analysis.md). Included by the main Makefile.
#   make reproduce-table-3.2 [LAUNCHER=slurm] [DATA=digits]   train seeds 0-4 of the three networks, then analyse
#   make correlation-analysis [DATA=digits] [CORR_ARGS="--samples 20 --layers 3 9"]   analyse the trained runs
#   make table-3.2 [DATA=digits]                              the table from the records, beside the thesis's
#   make figures-ch3                                          Figs 3.2-3.7 from the records
#   make bench-correlation                                    memory / throughput / exactness (RESULT line)
PY ?= uv run python
RESULTS_DIR ?= results/runs
FIG_DIR ?= results/figures
DATA ?=
# more options of scripts/correlation_analysis.py (S, B, layers, kernel, bandwidth, --force, --device ...)
CORR_ARGS ?=
BENCH_CORRELATION_ARGS ?=
_CH3_ARGS = --results-dir $(RESULTS_DIR) --fig-dir $(FIG_DIR) $(if $(strip $(DATA)),--data $(strip $(DATA))) \
  $(foreach p,$(PINS),--pin $(p))

.PHONY: correlation-analysis figures-ch3 bench-correlation

correlation-analysis: ## Ch. 3: Σ′ statistics + smoother of every Ch. 3 run's best.ckpt into its record, then Figs 3.2-3.7
	$(PY) scripts/correlation_analysis.py $(_CH3_ARGS) $(CORR_ARGS)

figures-ch3: ## Figs 3.2-3.7 of Dutta (2019) (contours of g(d, k)) from the records' correlation sections
	$(PY) scripts/correlation_analysis.py --figures-only $(_CH3_ARGS)

bench-correlation: install ## correlation analysis: layer-3 memory, tiled-product throughput, exactness (last line: RESULT ...)
	$(PY) scripts/bench_correlation.py $(BENCH_CORRELATION_ARGS)

# make reproduce-table-3.2 (mk/reproduce.mk) trains the sweep table_3_2 and then runs the analysis;
# DATA=digits also trains on digits (the other reproduce targets take it through ARGS=data=...).
REPRODUCE_AFTER_3.2 = $(MAKE) --no-print-directory correlation-analysis
reproduce-table-3.2: override ARGS += $(if $(strip $(DATA)),data=$(strip $(DATA)))

# The reproduction report as a page, and every figure that can be built (docs/tables.md).
#   make figures                    source figures (Dutta Figs 2.1-2.4, Singh Figs 3.1-3.11) + a figure per table
#   make report                     results/report/: index.html + index.md, figures, a CSV per table, the runs' records
#   make report RESULTS_DIR=/scratch/runs DATA=digits
# RESULTS_DIR, DATA, PINS: as for make tables (mk/tables.mk); DATA_DIR: where CIFAR-10 is looked for (Fig 2.4).
# make report writes only ignored paths (results/report/, results/figures/ but for the tracked Figs 2.1-2.3,
# which it copies as they are): a clean checkout stays clean.
PY ?= uv run python
RESULTS_DIR ?= results/runs
FIG_DIR ?= results/figures
REPORT_DIR ?= results/report
DATA_DIR ?= data

.PHONY: figures figures-sources report

figures: figures-ch2 ## every source figure that the present data allows + a figure per table (says what it skipped)
	$(PY) scripts/make_figures.py --results-dir $(RESULTS_DIR) --out-dir $(FIG_DIR) --data-dir $(DATA_DIR) $(_PIN_ARGS) $(_DATA_ARGS)

# the sources' figures built from the records (not the tracked Figs 2.1-2.3, not the table figures)
figures-sources:
	$(PY) scripts/make_figures.py --no-tables --results-dir $(RESULTS_DIR) --out-dir $(FIG_DIR) --data-dir $(DATA_DIR) $(_PIN_ARGS) $(_DATA_ARGS)

report: figures-sources ## results/report/index.html (+ index.md): claims, summary, each table with its runs, readings
	$(PY) scripts/make_report.py --results-dir $(RESULTS_DIR) --out-dir $(REPORT_DIR) --figures-dir $(FIG_DIR) $(_PIN_ARGS) $(_DATA_ARGS)

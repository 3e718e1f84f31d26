# The reproduction report as a page, and every figure that can be built (docs/tables.md).
#   make figures                    source figures (Dutta Figs 2.1-2.4, Singh Figs 3.1-3.11) + a figure per table
#   make report                     tables + compare + figures, then results/report/index.html (+ index.md)
#   make report RESULTS_DIR=/scratch/runs DATA=digits
# RESULTS_DIR, DATA, PINS: as for make tables (mk/tables.mk); DATA_DIR: where CIFAR-10 is looked for (Fig 2.4).
PY ?= uv run python
RESULTS_DIR ?= results/runs
FIG_DIR ?= results/figures
REPORT_DIR ?= results/report
DATA_DIR ?= data

.PHONY: figures report

figures: figures-ch2 ## every source figure that the present data allows + a figure per table (says what it skipped)
	$(PY) scripts/make_figures.py --results-dir $(RESULTS_DIR) --out-dir $(FIG_DIR) --data-dir $(DATA_DIR) $(_PIN_ARGS) $(_DATA_ARGS)

report: tables compare figures ## results/report/index.html (+ index.md): summary, then each table beside the published one, with its figure
	$(PY) scripts/make_report.py --results-dir $(RESULTS_DIR) --out-dir $(REPORT_DIR) --figures-dir $(FIG_DIR) $(_PIN_ARGS) $(_DATA_ARGS)

# Thesis tables and the reproduction report from the run records (docs/tables.md).
#   make table-2.5                  one table -> results/tables/table_2_5.{md,tex,csv}
#   make tables                     all of them
#   make compare                    results/REPORT.md: the report (make report) as Markdown, without figures
#   make tables RESULTS_DIR=/scratch/runs PINS="allconvnet_baseline=1a2b3c4d5e"
#   make tables DATA=digits         only the records of one data set (cifar10, digits, ...)
PY ?= uv run python
RESULTS_DIR ?= results/runs
TABLES_DIR ?= results/tables
REPORT ?= results/REPORT.md
PINS ?=
# DATA: keep only the records of this data set (--data of make_table.py / compare.py); empty = all
DATA ?=
TABLE_IDS := 2.3 2.4 2.5 2.6 3.2 4.1 4.2 4.3 4.4 4.5 n3.1 n3.2 n3.3 n3.4 n3.5 n3.6 pp2 pp3 pp4 pp5
TABLE_TARGETS := $(addprefix table-,$(TABLE_IDS))
_PIN_ARGS = $(foreach p,$(PINS),--pin $(p))
_DATA_ARGS = $(if $(strip $(DATA)),--data $(strip $(DATA)))

.PHONY: tables compare $(TABLE_TARGETS)

tables: ## all thesis tables from the run records (Markdown, LaTeX, CSV under results/tables)
	$(PY) scripts/make_table.py all --results-dir $(RESULTS_DIR) --out-dir $(TABLES_DIR) --quiet $(_PIN_ARGS) $(_DATA_ARGS)

# table-2.3 ... table-pp5: one table (printed to the terminal too)
$(TABLE_TARGETS): table-%:
	$(PY) scripts/make_table.py $* --results-dir $(RESULTS_DIR) --out-dir $(TABLES_DIR) $(_PIN_ARGS) $(_DATA_ARGS)

compare: ## results/REPORT.md: the report's Markdown (claims, verdicts of published-protocol runs, readings)
	$(PY) scripts/compare.py --results-dir $(RESULTS_DIR) --out $(REPORT) $(_PIN_ARGS) $(_DATA_ARGS)

# Push-pull inhibition (Strisciuglio et al. 2020): docs/pushpull.md
#   make test-pushpull | reproduce-pushpull-table-5 | reproduce-pushpull-sensitivity
PY ?= uv run python

.PHONY: test-pushpull reproduce-pushpull-table-5 reproduce-pushpull-sensitivity

test-pushpull: ## tests of the push-pull layer and the robustness metrics
	$(PY) -m pytest tests/test_pushpull.py tests/test_robustness.py -q

reproduce-pushpull-table-5: ## push-pull ResNets with learned alpha (paper Table 5), seeds 0-4
	$(PY) train.py -m +sweep=pushpull_table_5

reproduce-pushpull-sensitivity: ## ResNet-20-PP over scale x alpha under Gaussian noise (paper Table 4)
	$(PY) train.py -m +sweep=pushpull_sensitivity

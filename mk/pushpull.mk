# Push-pull inhibition (Strisciuglio et al. 2020): docs/pushpull.md
# Its tables are reproduced like every other: make reproduce-table-pp2 … pp5, make table-pp2 … pp5.
PY ?= uv run python

.PHONY: test-pushpull

test-pushpull: ## tests of the push-pull layer and the robustness metrics
	$(PY) -m pytest tests/test_pushpull.py tests/test_robustness.py -q

# Adversarial attacks, gradient-masking red flags and Fisher-Rao norm (docs/attacks.md).
PY ?= uv run python
RESULTS_DIR ?= results/runs
REC ?=
.PHONY: red-flags evaluate-attacks

red-flags: ## print Table 3.4 beside the gradient-masking red flags of every run record in RESULTS_DIR
	$(PY) scripts/red_flags.py --results-dir $(RESULTS_DIR)

evaluate-attacks: ## run attacks + Fisher-Rao norm on a finished run's best checkpoint: make evaluate-attacks REC=<record.json|run dir>
	@test -n "$(REC)" || { echo "usage: make evaluate-attacks REC=<record.json or run dir> [ARGS='eval.evaluators.attacks.n=100']"; exit 2; }
	$(PY) scripts/evaluate_checkpoint.py $(REC) --eval attacks $(ARGS)

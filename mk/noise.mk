# Noise regularizers of Dutta (2019) Ch. 2: training-step cost of UG / CG / CP relative to the plain
# model, and dense vs structured sampling (docs/noise.md).
#   make bench-noise [BENCH_NOISE_ARGS="--device cuda --threads 2"]
BENCH_NOISE_ARGS ?=

.PHONY: bench-noise
bench-noise: install ## training-step time of UG/CG/CP vs baseline, dense vs structured Σ (last line: RESULT ...)
	$(PY) scripts/bench_noise.py $(BENCH_NOISE_ARGS)

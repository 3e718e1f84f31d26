# Structured dropout of Dutta (2019) Ch. 4: training-step cost of each method at layer 1 and 8 of
# VGG-11 relative to plain VGG-11 (process CPU time, 1 thread, batch 32 by default; docs/dropout.md).
#   make bench-dropout [BENCH_DROPOUT_ARGS="--batch-size 128 --repeats 5"]
PY ?= uv run python
BENCH_DROPOUT_ARGS ?=

.PHONY: bench-dropout
bench-dropout: install ## training-step time of each structured dropout vs plain VGG-11 (last line: RESULT ...)
	$(PY) scripts/bench_dropout.py $(BENCH_DROPOUT_ARGS)

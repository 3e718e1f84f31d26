# Full scale on one GPU (README "Full scale on one GPU"): throughput of the real training pipeline
# against the pure-compute limit, packing of concurrent runs, and the GPU-hours of every thesis table.
#   make bench-throughput [BENCH_THROUGHPUT_ARGS="--device cuda"]      -> results/bench/throughput_<device>.json
#   make bench-packing PACK_CONFIG=resnet20_pp PACK_N=4                 -> results/bench/packing_<config>_n<N>_<device>.json
#   make plan [PLAN_ARGS="--step-ms 4 --concurrency resnet20=4"]        (reads the two files above when they exist)
BENCH_THROUGHPUT_ARGS ?=
PACK_CONFIG ?= resnet20_pp
PACK_N ?= 4
PLAN_ARGS ?=

.PHONY: bench-throughput bench-packing plan
bench-throughput: install ## real pipeline vs pure-compute epoch of 5 configs + CIFAR-10-C eval time (last line: RESULT ...)
	$(PY) scripts/bench_throughput.py $(BENCH_THROUGHPUT_ARGS)

bench-packing: install ## aggregate throughput of PACK_N concurrent runs of PACK_CONFIG on one device (GPU measurement)
	$(PY) scripts/bench_throughput.py --concurrent $(PACK_N) --configs $(PACK_CONFIG) $(BENCH_THROUGHPUT_ARGS)

plan: install ## GPU-hours per thesis table and in total (runs x epochs x s/epoch / concurrency; last line: RESULT ...)
	$(PY) scripts/plan.py $(PLAN_ARGS)

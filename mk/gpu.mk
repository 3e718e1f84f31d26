# Offline GPU nodes (README "Running on an offline GPU node"):
#   make wheelhouse [WHEEL_PYTHON=3.12] [WHEEL_PLATFORM=manylinux_2_28_x86_64] [WHEEL_HAVE=torch,...]
#                                 wheels of every runtime dependency the node lacks -> .whl/ (needs the registry)
#   make gpu-check [DEVICE=cuda|cpu] [GPU_CHECK_ARGS="--parts throughput,plan"]
#                                 every GPU number in one command (<= 8 min on one H100) -> results/bench/gpu_check
#   make check-deps               the lower bounds of pyproject's ranges and a GPU node's versions resolve (uv)
WHEEL_PYTHON ?= 3.12
WHEEL_PLATFORM ?= manylinux_2_28_x86_64
# what the node has already (default: a PyTorch-only node, torch 2.11 + CUDA 13, Lightning 2.6, with their deps)
WHEEL_HAVE ?=
WHEEL_DIR ?= .whl
DEVICE ?=
GPU_CHECK_ARGS ?=

.PHONY: wheelhouse gpu-check check-deps

wheelhouse: ## download the wheels an offline GPU node with its own PyTorch lacks into .whl/ (WHEEL_PYTHON, WHEEL_PLATFORM)
	python3 scripts/wheelhouse.py --python-version $(WHEEL_PYTHON) --platform $(WHEEL_PLATFORM) --dest $(WHEEL_DIR) \
	  $(if $(strip $(WHEEL_HAVE)),--have $(WHEEL_HAVE))

gpu-check: ## every GPU number in one command, <= 8 min on one H100 (DEVICE=cpu: tiny dry run); no uv, no network
	bash scripts/gpu_check.sh $(if $(strip $(DEVICE)),--device $(strip $(DEVICE))) $(GPU_CHECK_ARGS)

check-deps: ## resolve pyproject's lower bounds and a GPU node's torch 2.11 / Lightning 2.6 with uv (resolution only)
	bash scripts/check_deps.sh

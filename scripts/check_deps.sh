#!/usr/bin/env bash
# make check-deps: pyproject's ranges resolve at their lower bounds and beside a GPU node's own PyTorch.
# Resolution only (uv pip compile: package metadata, no multi-GB wheels); needs the package registry,
# so it is not part of CI. Each line: RESULT check-deps case=<...> status=ok|FAILED torch=<version>.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null || { echo "error: make check-deps needs uv (pip install uv)" >&2; exit 2; }
fail=0
check() {  # name, python, extra uv arguments...
  local name="$1" py="$2"; shift 2
  local out
  if out="$(uv pip compile pyproject.toml --python-version "$py" --python-platform x86_64-manylinux_2_28 \
      --no-header --no-annotate --quiet "$@" 2>&1)"; then
    local pins
    pins="$(echo "$out" | grep -E '^(torch|torchvision|lightning|hydra-core|numpy)==' | tr '\n' ' ')"
    echo "RESULT check-deps case=$name status=ok python=$py $pins"
  else
    echo "RESULT check-deps case=$name status=FAILED python=$py"; echo "$out" | tail -5; fail=1
  fi
}
# 1. every direct dependency at its lowest allowed version (torch 2.4, torchvision 0.19, lightning 2.5, ...)
check lowest-direct 3.10 --resolution lowest-direct
# 2. a GPU node's own stack (this project's GPU machines: torch 2.11 + CUDA 13, Lightning 2.6, Python 3.12)
printf 'torch==2.11.0\ntorchvision==0.26.0\nlightning==2.6.6\n' > "${TMPDIR:-/tmp}/bioreg-node.txt"
check gpu-node-2.11 3.12 --constraint "${TMPDIR:-/tmp}/bioreg-node.txt"
# 3. the newest versions the ranges allow, on the newest Python
check highest 3.13
exit $fail

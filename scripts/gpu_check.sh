#!/usr/bin/env bash
# make gpu-check on a GPU node that has its own PyTorch, no uv and no network (README "Running on an
# offline GPU node"). Uses the project's .venv when there is one with torch in it; otherwise the
# node's python3 (PYTHON=...) with the wheels of .whl/ (make wheelhouse, on a machine with the
# registry) installed into a temporary folder: pip install --no-index --no-deps --target.
#   bash scripts/gpu_check.sh [--device cuda|cpu] [--size full|tiny] [--out DIR] [--parts a,b]
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="${WHEELS:-.whl}"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
  PYTHON=.venv/bin/python
  echo "gpu_check.sh: using the project environment .venv"
else
  PYTHON="${PYTHON:-python3}"
  "$PYTHON" -c "import torch, torchvision, lightning" || {
    echo "error: $PYTHON has no torch/torchvision/lightning: use the node's PyTorch python (PYTHON=...)" >&2
    exit 2
  }
  SITE="$(mktemp -d "${TMPDIR:-/tmp}/bioreg-site.XXXXXX")"
  trap 'rm -rf "$SITE"' EXIT
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    t0=$(date +%s)
    PIP_NO_INDEX=1 "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
      --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl
    n=$(ls "$WHEELS"/*.whl | wc -l)
    echo "gpu_check.sh: installed $n wheels of $WHEELS into $SITE in $(( $(date +%s) - t0 )) s"
  else
    echo "gpu_check.sh: no wheels in $WHEELS; using what $PYTHON has (make wheelhouse fills $WHEELS)"
  fi
  # the node's own packages (torch ...) come first: the wheelhouse only adds what it lacks
  node_site="$("$PYTHON" -c 'import site; print(":".join(site.getsitepackages()))')"
  export PYTHONPATH="$PWD/src:${PYTHONPATH:+$PYTHONPATH:}$node_site:$SITE"
fi
"$PYTHON" -c "import bioreg, hydra, omegaconf" || {
  echo "error: bioreg's dependencies are missing: make wheelhouse (with the registry), copy .whl/" >&2
  exit 2
}
exec "$PYTHON" scripts/gpu_check.py "$@"

"""The exact smoother data of every analysed layer in one ``.npz`` file beside the run record
(``seed<k>.correlation_bins.npz``), written atomically, and read back per layer."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bioreg.evaluate.correlation_analysis.common import AnalysisError
from bioreg.evaluate.correlation_analysis.smooth import LayerBins
from bioreg.io import atomic_write_bytes


def save_bins(path: str, results: Mapping[str, Any]) -> None:
    """All layers' bins (``results``: layer -> :class:`LayerResult`) in one compressed ``.npz`` (keys
    ``<layer>/<array>``), written atomically."""
    arrays = {f"{name}/{k}": v for name, r in results.items() for k, v in r.bins.to_numpy().items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_bins(path: str, layer: str) -> LayerBins:
    """The bins of ``layer`` from a file of :func:`save_bins`; a layer it lacks → :class:`AnalysisError`
    naming the layers it has."""
    with np.load(path) as f:
        if f"{layer}/d" not in f.files:
            have = sorted({k.split("/")[0] for k in f.files})
            raise AnalysisError(f"{path} has no bins of {layer!r}; it has: {', '.join(have)}")
        return LayerBins(d=torch.from_numpy(f[f"{layer}/d"]), k=torch.from_numpy(f[f"{layer}/k"]),
                         maps=torch.from_numpy(f[f"{layer}/maps"]).long(),
                         sums=torch.from_numpy(f[f"{layer}/sums"]).double(),
                         counts=torch.from_numpy(f[f"{layer}/counts"]).double())

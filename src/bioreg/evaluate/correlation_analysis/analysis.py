"""One layer end to end (collect → tiled reduce → bins → smooth, and the Linear Exponential column), the
evaluator ``eval.evaluators.correlation_analysis`` over several layers, and the check that a checkpoint
belongs to the analysed architecture."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from bioreg.evaluate.correlation_analysis.bins_io import save_bins
from bioreg.evaluate.correlation_analysis.collect import collect_blocks, draw_inputs
from bioreg.evaluate.correlation_analysis.common import (
    DISTANCE_SCALES,
    THESIS_LAYERS,
    AnalysisError,
    OffDiagStats,
    check_kernel,
    check_sizes,
    check_zero_variance,
    cumulative_stride,
    insertion_points,
    network,
    resolve_layer,
)
from bioreg.evaluate.correlation_analysis.linear_exponential import linear_exponential_section
from bioreg.evaluate.correlation_analysis.reduce import TiledReducer
from bioreg.evaluate.correlation_analysis.smooth import LayerBins, smooth_grid
from bioreg.layers.correlation import CorrelationParams


def _rounded(v: float | None, digits: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


@dataclass
class LayerResult:
    """One layer's analysis: Table 3.2's statistics of ``Σ′``, its bins, the smoothed grid ``g(d, k)``,
    the Linear Exponential statistics, the settings and the timings; :meth:`section` is its record form."""

    layer: str
    shape: tuple[int, int, int]
    stats: OffDiagStats
    n_undefined: int
    bins: LayerBins
    d_grid: Tensor
    k_grid: Tensor
    grid: Tensor                 # (len(k_grid), len(d_grid))
    linear_exponential: dict[str, dict[str, float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def section(self, digits: int = 6) -> dict[str, Any]:
        """The record section of this layer (JSON-ready; grid rounded to ``digits`` decimals)."""
        def r(v):
            return _rounded(v, digits)

        st, b = self.stats, self.bins
        x, ys, cs = b.points()
        return {
            "max": r(st.max), "min": r(st.min), "mean": r(st.mean), "std": r(st.std),
            "n_pairs": st.n, "n_undefined": self.n_undefined, "shape": list(self.shape),
            "n_bins": int(len(x)),
            "profile_d": {"d": [r(v) for v in b.d.tolist()],
                          "mean": [r(v) for v in (b.sums.sum(0) / b.counts.sum(0).clamp_min(1)).tolist()],
                          "count": [int(v) for v in b.counts.sum(0).tolist()]},
            "smoothed": {"d": [r(v) for v in self.d_grid.tolist()], "k": [r(v) for v in self.k_grid.tolist()],
                         "g": [[r(v) for v in row] for row in self.grid.tolist()]},
            "linear_exponential": self.linear_exponential,
            "settings": self.settings, "timing_s": {k: round(v, 3) for k, v in self.timing.items()},
        }


def analyse_layer(model: nn.Module, layer: int | str, images: Tensor, *, samples: int = 100, batch: int = 64,
                  seed: int = 0, zero_variance: str = "zero", kernel: str = "gaussian",
                  bandwidth: float = 0.25, grid: tuple[int, int] = (41, 41),
                  scales: Sequence[str | float] = DISTANCE_SCALES,
                  le_params: CorrelationParams | None = None, dtype: torch.dtype = torch.float32,
                  tile_units: int = 2048, device: torch.device | str | None = None) -> LayerResult:
    """Σ′ of one layer (eq 3.2), its Table 3.2 statistics, bins and smoothed ``g(d, k)`` (eq 3.6)."""
    check_zero_variance(zero_variance)
    check_kernel(kernel, bandwidth)
    name = resolve_layer(model, layer)
    check_sizes(samples, batch)
    net = network(model)
    weight = net.get_submodule(insertion_points(net)[name].producer).weight
    fixed, partners = draw_inputs(len(images), samples, batch, seed)
    t0 = time.perf_counter()
    blocks = collect_blocks(model, name, images, fixed, partners, dtype=dtype, device=device)
    t1 = time.perf_counter()
    red = TiledReducer(blocks, zero_variance, tile_units).run()
    t2 = time.perf_counter()
    bins = red.bins(weight)
    c, h, w = blocks.shape
    d_grid = torch.linspace(0.0, float(bins.d.max()), grid[0], dtype=torch.float64)
    k_grid = torch.linspace(-1.0, 1.0, grid[1], dtype=torch.float64)
    g = smooth_grid(bins, d_grid, k_grid, bandwidth, kernel)
    t3 = time.perf_counter()
    stride = cumulative_stride(images.shape[1:], blocks.shape)
    le = linear_exponential_section(weight, h, w, stride, scales, le_params)
    settings = {"S": samples, "B": batch, "seed": seed, "zero_variance": zero_variance, "kernel": kernel,
                "bandwidth": bandwidth, "lambdas": "linspace(0, 1, B)",
                "dtype": str(dtype).replace("torch.", ""),
                "cumulative_stride": stride, "point": name}
    timing = {"collect": t1 - t0, "tiles": t2 - t1, "matmul": red.matmul_s, "smooth": t3 - t2}
    return LayerResult(name, blocks.shape, red.stats(), red.n_undefined(), bins, d_grid, k_grid, g, le,
                       settings, timing)


# ----------------------------------------------------------------------------------------------
# Evaluator (eval.evaluators.correlation_analysis) and checkpoint check
# ----------------------------------------------------------------------------------------------


def load_test_images(datamodule: Any) -> Tensor:
    ds = datamodule.test_set()
    return torch.stack([ds[i][0] for i in range(len(ds))])


class CorrelationAnalysis:
    """Evaluator: the §3.2 analysis at each of ``layers``; returns ``{layer: section}`` for
    ``record.extra.correlation_analysis``. ``bins_path``: also write every layer's bins to this
    ``.npz`` (the script sets it next to the record). Options as in :func:`analyse_layer`."""

    def __init__(self, layers: Sequence[int | str] = THESIS_LAYERS, samples: int = 100, batch: int = 64,
                 seed: int = 0, zero_variance: str = "zero", kernel: str = "gaussian",
                 bandwidth: float = 0.25, grid: Sequence[int] = (41, 41),
                 scales: Sequence[str | float] = DISTANCE_SCALES,
                 dtype: str = "float32", tile_units: int = 2048, bins_path: str | None = None,
                 progress: bool | None = None) -> None:
        check_sizes(samples, batch)
        check_zero_variance(zero_variance)
        check_kernel(kernel, bandwidth)
        if dtype not in ("float32", "float64"):
            raise AnalysisError(f"dtype={dtype!r}; valid: float32, float64")
        if not layers:
            raise AnalysisError(f"layers is empty; Table 3.2 uses {', '.join(map(str, THESIS_LAYERS))}")
        self.layers = list(layers)
        self.kw = dict(samples=samples, batch=batch, seed=seed, zero_variance=zero_variance, kernel=kernel,
                       bandwidth=bandwidth, grid=tuple(int(g) for g in grid), scales=list(scales),
                       dtype=getattr(torch, dtype), tile_units=tile_units)
        self.bins_path = bins_path
        self.progress = progress
        self.results: dict[str, LayerResult] = {}

    def run(self, model: nn.Module, images: Tensor, device: torch.device | str | None = None,
            progress: bool = False) -> dict[str, LayerResult]:
        names = [resolve_layer(model, layer) for layer in self.layers]  # all errors before any work
        out = {}
        for name in names:
            if progress:
                print(f"correlation analysis: {name}", flush=True)
            out[name] = analyse_layer(model, name, images, device=device, **self.kw)
        self.results = out
        return out

    def __call__(self, ctx: Any) -> dict[str, Any]:
        show = ctx.progress if self.progress is None else self.progress
        res = self.run(ctx.model, load_test_images(ctx.datamodule), device=ctx.device, progress=show)
        if self.bins_path:
            save_bins(self.bins_path, res)
        return {"layers": {name: r.section() for name, r in res.items()}}


def _arch_name(model: nn.Module) -> str:
    """The network's class name, through a ``Classifier`` (``.net``) or a LitClassifier (``.model.net``)."""
    for path in ("", "net", "model.net"):
        try:
            m = model.get_submodule(path) if path else model
        except AttributeError:
            continue
        if getattr(m, "points", None) is not None:
            return type(m).__name__
    return type(model).__name__


def check_checkpoint_model(state_dict: Mapping[str, Any], model: nn.Module, where: str = "checkpoint",
                           valid: Sequence[str] = ()) -> None:
    """One-line :class:`AnalysisError` when ``state_dict`` is not a checkpoint of ``model``'s architecture."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    wrong = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if missing or wrong:
        ex = (missing or wrong)[0]
        hint = f"; analyse a checkpoint of one of: {', '.join(valid)}" if valid else ""
        raise AnalysisError(f"{where} is not a checkpoint of {_arch_name(model)} ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped tensors, e.g. "
                            f"{ex!r}){hint}")

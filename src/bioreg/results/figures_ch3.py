"""Dutta (2019) Ch. 3 from the records' ``extra.correlation_analysis`` sections: Figures 3.2–3.7 (the
smoothed correlation ``g(d, k)`` of the three VGG-11 networks, mean over seeds) and the check of the
"Linear Exponential" readings against the printed column of Table 3.2 (``make figures-ch3``,
``scripts/correlation_analysis.py``; docs/correlation_analysis.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bioreg.io import save_figure

__all__ = ["EXPERIMENTS", "LABELS", "FIGURES", "SECTION", "mean_grid", "make_figures",
           "linear_exponential_report", "seed_line"]

EXPERIMENTS = ["vgg11_ch3_vanilla", "vgg11_ch3_mixup", "vgg11_ch3_manifold_mixup"]
LABELS = {"vgg11_ch3_vanilla": "Vanilla", "vgg11_ch3_mixup": "Input Mixup",
          "vgg11_ch3_manifold_mixup": "Manifold Mixup"}
#: thesis figure per layer (Figs 3.2-3.6), and 3.7 = layer 9 with a shared colour scale
FIGURES = {"layer3": "3_2", "layer5": "3_3", "layer6": "3_4", "layer8": "3_5", "layer9": "3_6"}
#: the record section (``extra.<SECTION>``) the analysis writes
SECTION = "correlation_analysis"
log = logging.getLogger("bioreg")

#: records of one experiment: (record path, record) per seed
Records = Sequence[tuple[str, Mapping[str, Any]]]


def _layer_section(rec: Mapping[str, Any], layer: str) -> Mapping[str, Any] | None:
    return (((rec.get("extra") or {}).get(SECTION) or {}).get("layers") or {}).get(layer)


def mean_grid(records: Records, layer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Mean over the seeds' smoothed grids of one network and layer: ``(d, k, g, n_seeds)``; ``None``
    when no record has the layer."""
    gs, d, k = [], None, None
    for _, rec in records:
        sec = _layer_section(rec, layer)
        if not sec:
            continue
        sm = sec["smoothed"]
        if d is not None and (len(sm["d"]) != len(d) or len(sm["k"]) != len(k)):
            continue  # a differently sized grid (other --grid) is not averaged with this one
        d, k = np.asarray(sm["d"], float), np.asarray(sm["k"], float)
        gs.append(np.asarray(sm["g"], dtype=float))
    if not gs:
        return None
    return d, k, np.nanmean(np.stack(gs), 0), len(gs)


def _draw(panels: list, layer: str, fig_id: str, shared: bool):
    """One figure: a contour panel of ``g(d, k)`` per network; per-panel colour bars or one shared scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False, sharey=True,
                             constrained_layout=True)
    lo = min(float(np.nanmin(g[2])) for _, g in panels)
    hi = max(float(np.nanmax(g[2])) for _, g in panels)
    levels = np.linspace(lo, hi if hi > lo else lo + 1e-6, 15) if shared else 15
    for i, (ax, (exp, (d, k, g, n))) in enumerate(zip(axes[0], panels, strict=True)):
        cs = ax.contourf(d, k, g, levels=levels, cmap="viridis")
        if not shared:
            fig.colorbar(cs, ax=ax, format="%.2f").set_label("correlation")
        ax.set_title(f"{LABELS.get(exp, exp)} ({n} seed{'s' if n != 1 else ''})", fontsize=10)
        ax.set_xlabel("distance d (feature-map units)")
        if i == 0:
            ax.set_ylabel("tuning similarity k (cosine of kernels)")
    if shared:
        fig.colorbar(cs, ax=list(axes[0]), shrink=0.9, format="%.2f").set_label("correlation (shared scale)")
    num = layer.removeprefix("layer")
    fig.suptitle(f"Fig {fig_id.replace('_', '.')}: smoothed correlation g(d, k) of VGG-11 layer {num} "
                 f"(Dutta 2019, eq 3.6)", fontsize=11)
    return fig


def make_figures(by_exp: Mapping[str, Records], layers: Sequence[str], out_dir: Path) -> list[Path]:
    """Figs 3.2-3.6 (per-panel colour bars) and Fig 3.7 (layer 9, one shared colour scale), PNG and PDF
    under ``out_dir``, written atomically; a figure whose layer no record has is skipped with a warning."""
    out: list[Path] = []
    jobs = [(layer, FIGURES[layer], False) for layer in layers if layer in FIGURES]
    if "layer9" in layers:
        jobs.append(("layer9", "3_7", True))
    for layer, fig_id, shared in jobs:
        panels = [(exp, mean_grid(by_exp.get(exp, []), layer)) for exp in by_exp]
        panels = [(e, g) for e, g in panels if g is not None]
        if not panels:
            log.warning("no %s section for %s in the records: Fig %s skipped", SECTION, layer,
                        fig_id.replace("_", "."))
            continue
        fig = _draw(panels, layer, fig_id, shared)
        out += save_figure(fig, out_dir, f"fig_{fig_id}", ("png", "pdf"), dpi=150, close=True)
    return out


def _printed_column() -> Any:
    """Table 3.2's printed "Linear Exponential" column: row label -> mean."""
    import pandas as pd

    from bioreg.results.tables import PAPER_DIR

    paper = pd.read_csv(PAPER_DIR / "dutta2019_table_3_2.csv")
    return paper[paper["column"] == "Linear Exponential"].set_index("row")["mean"]


_NAMES = {"max": "Max.", "min": "Min.", "mean": "Mean", "std": "Std."}


def _scale_means(recs: Records, layer: str, scale: str) -> dict[str, float]:
    """Mean over the seeds of the Linear Exponential statistics of ``layer`` under ``scale``."""
    vals = {}
    for key in _NAMES:
        xs = [(_layer_section(r, layer) or {}).get("linear_exponential", {}).get(scale, {}).get(key)
              for _, r in recs]
        xs = [x for x in xs if x is not None]
        if xs:
            vals[key] = float(np.mean(xs))
    return vals


def linear_exponential_report(by_exp: Mapping[str, Records], layers: Sequence[str]) -> list[str]:
    """Which reading of eq 2.14's distance reproduces the printed Linear Exponential column: one line per
    layer and scale (the vanilla network's values beside the printed ones) and the closest reading."""
    paper = _printed_column()
    recs = by_exp.get(EXPERIMENTS[0], [])
    lines, err = [], {}
    for layer in layers:
        num = layer.removeprefix("layer")
        for scale in ("grid", "input_pixels"):
            vals = _scale_means(recs, layer, scale)
            if not vals:
                continue
            printed = {k: paper.get(f"Layer {num} {n}") for k, n in _NAMES.items()}
            diffs = [abs(vals[k] - printed[k]) for k in vals if printed.get(k) is not None]
            err.setdefault(scale, []).extend(diffs)
            lines.append(f"  layer {num} {scale:>12}: " + ", ".join(
                f"{k} {vals[k]:.3f} (printed {printed[k]})" for k in vals))
    if err:
        best = min(err, key=lambda s: max(err[s]))
        lines.append("  largest |difference| to the printed column: " + ", ".join(
            f"{s} {max(v):.3f}" for s, v in err.items()) + f" -> closest reading: {best}")
    return lines


def seed_line(experiment: str, seed: int, section: Mapping[str, Any], layers: Sequence[str]) -> str:
    """``<network> seed <k>: layer3: max … min … mean … std … | …`` for one record's section."""
    st = " | ".join(f"{n}: max {v['max']:.2f} min {v['min']:.2f} mean {v['mean']:.2f} std {v['std']:.2f}"
                    for n, v in section["layers"].items() if n in layers)
    return f"{LABELS.get(experiment, experiment)} seed {seed}: {st}"

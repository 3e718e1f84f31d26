"""Singh (2023) Figs 3.1–3.10: activation statistics over training, from the run records.

Per point (``48``, ``51``, …) two figures: ``activation_stats_<point>`` — one panel per statistic
(mean, max, std, variance, sparsity %; Figs 3.3–3.10), one line per model, x = epoch, the per-epoch
EWMA history of ``extra.activation_stats_history`` (written by
:class:`bioreg.lit.callbacks.activation_stats.ActivationStats`) averaged over the seeds of a model;
``activation_mean_std_<point>`` — the final mean activation with the standard deviation as error bar,
models sorted by ascending mean (Figs 3.1/3.2). ``scripts/fig_activation_stats.py`` is the command.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bioreg.io import save_figure
from bioreg.results.records import RecordStore

__all__ = ["STATS", "STAT_LABELS", "DEFAULT_NAMES", "thesis_label", "load_histories", "plot_point"]

log = logging.getLogger("bioreg")

STATS = ("mean", "max", "std", "var", "sparsity")
STAT_LABELS = {"mean": "mean", "max": "maximum", "std": "standard deviation", "var": "variance",
               "sparsity": "sparsity (% zeros)"}
# the models of Tables 3.2-3.3 (the best of Table 3.1), in the thesis's order
DEFAULT_NAMES = (
    "vgg16_baseline", "vgg16_dropout_48_51", "vgg16_spatialmax_48_51", "vgg16_temporalmax_48_51",
    "vgg16_spatiotemporalmax_48_51", "vgg16_spatiotemporal_softmax_48_51_t80",
    "vgg16_temporal_softmax_48_51_t100",
)
_KIND = {"baseline_noaug": "Baseline-no-data-aug", "baseline": "Baseline", "dropout": "Dropout",
         "spatialmax": "SpatialMax", "temporalmax": "TemporalMax", "spatiotemporalmax": "SpatiotemporalMax",
         "spatiotemporal_softmax": "Spatiotemporal Softmax", "temporal_softmax": "Temporal Softmax",
         "spatial_softmax": "Spatial Softmax"}


def thesis_label(name: str) -> str:
    """``vgg16_temporal_softmax_48_51_t100`` -> ``Temporal Softmax 48 51 (T=100)`` (Table 3.1's names)."""
    m = re.fullmatch(r"(?:vgg16_)?([a-z_]+?)((?:_\d+)*)(?:_t(\d+(?:\.\d+)?))?", name)
    if not m or m.group(1) not in _KIND:
        return name
    label = _KIND[m.group(1)]
    if m.group(2):
        label += " " + " ".join(m.group(2).strip("_").split("_"))
    if m.group(3):
        label += f" (T={m.group(3)})"
    return label


def load_histories(results_dir: Path, names: Sequence[str], point: str) -> dict[str, dict]:
    """``{name: {"epoch": [...], stat: [... seed mean ...], "final": {stat: seed mean}, "n": seeds}}``
    from the completed records of ``names`` under ``results_dir``."""
    per: dict[str, list[dict]] = defaultdict(list)
    for _path, rec in RecordStore(results_dir):
        if rec.get("status") != "completed" or rec.get("name") not in names:
            continue
        extra = rec.get("extra") or {}
        h = (extra.get("activation_stats_history") or {}).get(point)
        final = (extra.get("activation_stats") or {}).get(point)
        if h or final:
            per[rec["name"]].append({"history": h, "final": final})
    out: dict[str, dict] = {}
    for name in names:
        runs = per.get(name)
        if not runs:
            continue
        d: dict = {"n": len(runs)}
        hs = [r["history"] for r in runs if r["history"] and r["history"].get("epoch")]
        if hs:
            n_ep = min(len(h["epoch"]) for h in hs)
            d["epoch"] = np.asarray(hs[0]["epoch"][:n_ep])
            for s in STATS:
                d[s] = np.mean([np.asarray(h["ewma"][s][:n_ep], dtype=float) for h in hs], axis=0)
        finals = [r["final"] for r in runs if r["final"]]
        if finals:
            d["final"] = {s: float(np.mean([f[s] for f in finals])) for s in STATS}
        out[name] = d
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_curves(curves: dict[str, dict], point: str, where: str, out: Path,
                 stats: tuple[str, ...]) -> list[Path]:
    """Figs 3.3–3.10: one panel per statistic, one line per model over the epochs."""
    plt = _pyplot()
    # at most 3 panels a row: the figure stays <= 11 in wide and its text keeps its size on the report
    ncols = min(3, len(stats))
    nrows = -(-len(stats) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(stats):]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, stats, strict=False):
        for name, d in curves.items():
            ax.plot(d["epoch"] + 1, d[s], label=thesis_label(name), lw=1.2, marker="o", ms=2.5)
        ax.set_title(f"{where}: {STAT_LABELS[s]}", fontsize=9)
        ax.set_xlabel("epoch")
        if s in ("max", "var"):
            ax.set_yscale("log")
    axes.flat[len(stats) - 1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    stem = f"activation_stats_{point.replace('.', '_')}"
    return save_figure(fig, out, stem, ("png", "pdf"), dpi=150, close=True)


def _plot_finals(finals: dict[str, dict], point: str, where: str, out: Path) -> list[Path]:
    """Figs 3.1/3.2: the final mean activation with the std as error bar, models by ascending mean."""
    plt = _pyplot()
    order = sorted(finals, key=lambda n: finals[n]["mean"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(order), 3.2))
    x = np.arange(len(order))
    ax.errorbar(x, [finals[n]["mean"] for n in order], yerr=[finals[n]["std"] for n in order], fmt="o",
                capsize=3)
    ax.set_xticks(x, [thesis_label(n) for n in order], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"activation in {where}")
    ax.set_title(f"Mean and standard deviation of activations, {where}", fontsize=9)
    fig.tight_layout()
    stem = f"activation_mean_std_{point.replace('.', '_')}"
    return save_figure(fig, out, stem, ("png", "pdf"), dpi=150, close=True)


def plot_point(data: dict[str, dict], point: str, out: Path, stats: tuple[str, ...] = STATS,
               say: Callable[[str], None] = log.warning) -> list[Path]:
    """Both figures of ``point`` from :func:`load_histories`' ``data`` (each when its data exist),
    written atomically under ``out`` as PNG and PDF; ``say`` gets the note when no model has the two
    epochs a curve needs."""
    where = f"layer {point}" if point.isdigit() else point
    written: list[Path] = []
    # a curve over training needs two epochs at least: one point would draw empty-looking axes
    curves = {n: d for n, d in data.items() if "epoch" in d and len(d["epoch"]) >= 2}
    short = sorted(n for n, d in data.items() if "epoch" in d and len(d["epoch"]) < 2)
    if short and not curves:
        say(f"point {point}: only one epoch of activation statistics in the records of {', '.join(short)}; "
            "a curve over training (Figs 3.3-3.10) needs at least 2 epochs")
    if curves:
        written += _plot_curves(curves, point, where, out, stats)
    finals = {n: d["final"] for n, d in data.items() if "final" in d}
    if finals:
        written += _plot_finals(finals, point, where, out)
    return written

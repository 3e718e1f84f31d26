"""Figures of the reproduction: every table drawn from its spec, and the sources' remaining figures.

**Tables.** :func:`plot_table` draws any table spec from the cells of the report
(:class:`Cell`, made by ``bioreg.results.report_page.figure_cells`` from the same cells the page
prints): per cell the mean with the sample std over seeds as error bar, the published value beside
it (a black diamond, with its printed std as error bar where the paper prints one), cells outside 2σ
of the published value outlined in vermillion with a ✗ marker (:data:`FLAG_COLOR`, never a series
colour, :data:`SERIES_COLORS`), cells with fewer seeds than the table asks for hatched (curves: a
hollow point), cells of smoke runs pale beside cells with a verdict. Rows keep the table's order;
text is ≥ :data:`FONT` pt and no figure is wider than :data:`MAX_WIDTH_IN`. There is no per-table
plotting code: the spec's ``figure:`` entry picks one of a few kinds, and without one the kind
follows from the table's shape (:func:`figure_kind`):

``curves``
    the metric axis is a swept number (every label reads ``<name>=<number>``, e.g. push-pull
    Table 4's ``sigma=0.02`` or ``var=1e-4``): one line per experiment over that number, the
    published curve of the same colour dashed beside it (Strisciuglio et al. (2020) Table 4);
``grouped_stats``
    the metric labels are ``<group> <statistic>`` with the same statistics in two or more groups
    (``Layer 3 Max.``, ``Layer 3 Min.``, …, Dutta (2019) Table 3.2): one panel per statistic,
    the groups along x, a bar per experiment;
``panels``
    experiments are the rows and metrics the columns (Singh (2023) Tables 3.1–3.6, push-pull
    Tables 3/5): one panel per metric (their scales differ), a horizontal bar per experiment;
``bars``
    metrics are the rows and experiments the columns (Dutta (2019) Tables 2.3–2.6, 4.1–4.5,
    push-pull Table 2): one panel, a group of bars per row — per occlusion or per corruption —
    one bar per experiment;
``none``
    no figure.

Options of ``figure:`` (all optional): ``kind``, ``x_label``, ``y_label``, ``x_scale``
(``auto | linear | log | category``, curves), ``group_pattern`` (a regular expression with the
named groups ``group`` and ``stat``, grouped_stats).

**Source figures.** :func:`fig_occlusions` is Dutta (2019) Fig. 2.4 (one test image under each of
the six occlusions of §2.4.3, drawn by :mod:`bioreg.data.occlusion`, the code the evaluation uses);
:func:`fig_test_loss` is Singh (2023) Fig. 3.11 (loss over training of the models of Table 3.2,
log scale, exponentially smoothed, from the runs' CSV logs). :data:`SOURCE_FIGURES` lists every
figure file of the sources the project writes, with its caption, for ``make figures`` and the report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bioreg.io import save_figure

__all__ = [
    "FIGURE_KINDS", "FIGURE_OPTIONS", "SOURCE_FIGURES", "SourceFigure", "figure_options", "figure_kind",
    "metric_axis", "plot_table", "table_figure", "Cell", "FLAG_COLOR", "SERIES_COLORS", "FONT", "FIGURE_DPI",
    "fig_occlusions", "occlusion_image", "fig_test_loss", "loss_histories", "ewma",
]

FIGURE_KINDS = ("auto", "bars", "panels", "curves", "grouped_stats", "none")
FIGURE_OPTIONS = ("kind", "x_label", "y_label", "x_scale", "group_pattern")
X_SCALES = ("auto", "linear", "log", "category")
#: ``<group> <statistic>``: the statistic is the last word (max, min, mean, std, ... with or without a dot)
DEFAULT_GROUP_PATTERN = (
    r"^(?P<group>.+?)[\s,/:|-]+(?P<stat>max(?:imum)?|min(?:imum)?|mean|avg|average|std|sd|"
    r"var(?:iance)?|median)\.?$")
#: ``sigma=0.02``, ``var = 1e-4``, ``σ²=5e-4 (std 0.022)``, or a bare number
_SWEEP = re.compile(r"^\s*(?:(?P<name>[^=]+?)\s*=\s*)?(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                    r"\s*(?:\([^)]*\))?\s*$")
#: the mark of a cell outside 2σ (vermillion); no series colour is ever this one
FLAG_COLOR = "#D55E00"
PUBLISHED_COLOR = "black"
PARTIAL_COLOR = "#222222"  # the hatch of a bar with fewer seeds than the table asks for
#: series colours: Okabe & Ito's colour-blind-safe set without its vermillion (the flag) and black (the
#: published values), then Paul Tol's indigo, green, olive and cyan for tables with more rows
SERIES_COLORS = ("#0072B2", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#CC79A7", "#999999",
                 "#332288", "#117733", "#999933", "#88CCEE")
#: the smallest font (pt) of a table figure, and its widest size: at the page's width (1216 CSS px =
#: 12.7 in) a figure of at most 12.5 in is shown at 100 %, so no text is smaller than FONT pt
FONT = 8
MAX_WIDTH_IN = 12.5
#: PNG resolution: 2 px per CSS px at 96 px/in, sharp on high-density screens
FIGURE_DPI = 192


def figure_options(options: Mapping[str, Any], table_id: str = "?") -> dict[str, Any]:
    """Check a spec's ``figure:`` mapping; unknown keys or kinds raise ``ValueError`` naming the valid
    ones."""
    opts = dict(options)
    bad = sorted(set(opts) - set(FIGURE_OPTIONS))
    if bad:
        raise ValueError(
            f"table {table_id}: unknown figure option(s) {bad}; valid: {', '.join(FIGURE_OPTIONS)}")
    kind = str(opts.get("kind", "auto"))
    if kind not in FIGURE_KINDS:
        raise ValueError(f"table {table_id}: figure kind {kind!r}; valid: {', '.join(FIGURE_KINDS)}")
    opts["kind"] = kind
    if str(opts.get("x_scale", "auto")) not in X_SCALES:
        raise ValueError(
            f"table {table_id}: figure x_scale {opts['x_scale']!r}; valid: {', '.join(X_SCALES)}")
    if "group_pattern" in opts:
        try:
            pat = re.compile(str(opts["group_pattern"]), re.IGNORECASE)
        except re.error as e:
            raise ValueError(
                f"table {table_id}: figure group_pattern is not a regular expression: {e}") from e
        if not {"group", "stat"} <= set(pat.groupindex):
            raise ValueError(
                f"table {table_id}: figure group_pattern needs the named groups (?P<group>...) and "
                "(?P<stat>...)")
    return opts


# ----------------------------------------------------------------------------- shape of a table


def metric_axis(spec: Any) -> str:
    """``rows`` when the rows carry the metrics (Dutta's layout), else ``columns`` (Singh's)."""
    return "rows" if any(r.metric is not None for r in spec.rows) else "columns"


def _axes(spec: Any) -> tuple[list[str], list[str]]:
    """(metric labels, experiment labels) in printed order."""
    rows, cols = [r.label for r in spec.rows], [c.label for c in spec.columns]
    return (rows, cols) if metric_axis(spec) == "rows" else (cols, rows)


def _sweep_values(labels: Sequence[str]) -> tuple[str, list[float]] | None:
    """``["sigma=0", "sigma=0.02", ...]`` → ``("sigma", [0.0, 0.02, ...])``; None unless every label is one
    and all name the same quantity (bare numbers: name ``""``)."""
    ms = [_SWEEP.match(lb) for lb in labels]
    if len(labels) < 3 or not all(ms):
        return None
    names = {m.group("name") for m in ms if m}
    if len(names) != 1:
        return None
    return names.pop() or "", [float(m.group("value")) for m in ms if m]


def _stat_groups(labels: Sequence[str],
                 pattern: str) -> tuple[list[str], list[str], dict[tuple[str, str], str]] | None:
    """(groups, statistics, {(group, stat): label}) when every label splits and ≥ 2 groups share the stats."""
    pat = re.compile(pattern, re.IGNORECASE)
    ms = [pat.match(lb) for lb in labels]
    if not labels or not all(ms):
        return None
    groups: dict[str, None] = {}
    stats: dict[str, None] = {}
    where: dict[tuple[str, str], str] = {}
    for lb, m in zip(labels, ms, strict=True):
        g, s = m.group("group").strip(), m.group("stat").strip()  # type: ignore[union-attr]
        groups.setdefault(g)
        stats.setdefault(s)
        where[(g, s)] = lb
    if len(groups) < 2 or len(where) != len(labels):
        return None
    return list(groups), list(stats), where


def figure_kind(spec: Any) -> str:
    """The spec's ``figure.kind``, or (``auto``) the kind its shape calls for (module docstring)."""
    opts = figure_options(spec.figure or {}, spec.id)
    if opts["kind"] != "auto":
        return opts["kind"]
    metrics, _ = _axes(spec)
    if _sweep_values(metrics):
        return "curves"
    if _stat_groups(metrics, str(opts.get("group_pattern", DEFAULT_GROUP_PATTERN))):
        return "grouped_stats"
    return "panels" if metric_axis(spec) == "columns" else "bars"


# ----------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """What a figure draws of one table cell (``bioreg.results.report_page.figure_cells`` makes them
    from the report's cells): the runs' mean ± std, the published value ± printed std, and marks."""

    repro: float | None
    repro_std: float | None
    n: int
    n_expected: int
    paper: float | None
    paper_std: float | None
    outside: bool = False  # outside 2σ of the published value (a verdict)
    smoke: bool = False  # only smoke runs fill it: no verdict

    @property
    def partial(self) -> bool:
        return 0 < self.n < self.n_expected


EMPTY = Cell(None, None, 0, 0, None, None)


def _series_colors(n: int) -> list[str]:
    """``n`` series colours from :data:`SERIES_COLORS` (colour-blind safe, never the flag colour)."""
    return [SERIES_COLORS[i % len(SERIES_COLORS)] for i in range(n)]


# ----------------------------------------------------------------------------- drawing


def _mark_bar(ax: Any, bar: Any, cell: Cell, horizontal: bool, faded: bool) -> None:
    """Hatch (fewer seeds), flag outline + ✗ marker (outside 2σ), fade (smoke) on one bar."""
    from matplotlib.patches import Rectangle

    if faded and cell.smoke:
        bar.set_alpha(0.45)
    if cell.partial:  # a separate patch, so the hatch is dark whatever the bar's edge
        ax.add_patch(Rectangle(bar.get_xy(), bar.get_width(), bar.get_height(), fill=False, hatch="////",
                               edgecolor=PARTIAL_COLOR, linewidth=0, gid="fewer-seeds"))
    if cell.outside:
        bar.set_edgecolor(FLAG_COLOR)
        bar.set_linewidth(2.2)
        x, y = bar.get_x(), bar.get_y()
        end = (x + bar.get_width(), y + bar.get_height() / 2) if horizontal else (x + bar.get_width() / 2,
                                                                                   y + bar.get_height())
        ax.plot(*end, marker="X", ms=6, color=FLAG_COLOR, mec="white", mew=0.6, zorder=4, gid="flag")


def _bars(ax: Any, categories: Sequence[str], series: Sequence[str], colors: Sequence[Any],
          get: Callable[[str, str], Cell], horizontal: bool = False, faded: bool = False) -> None:
    """A group of bars per category, a bar per series: reproduced mean ± std, published diamond ± std.
    Each bar's ``gid`` is ``cell:<category>|<series>`` (tests read the order back)."""
    k = len(series)
    width = 0.8 / k
    pos = np.arange(len(categories), dtype=float)
    draw = ax.barh if horizontal else ax.bar
    for j, (ser, col) in enumerate(zip(series, colors, strict=True)):
        x = pos - 0.4 + width * (j + 0.5)
        cells = [get(c, ser) for c in categories]
        val = np.array([c.repro if c.repro is not None else np.nan for c in cells])
        kw = {"height": width} if horizontal else {"width": width}
        bars = draw(x, np.nan_to_num(val, nan=0.0), color=col, label=ser, edgecolor="none", **kw)
        for b, c, v, cat in zip(bars, cells, val, categories, strict=True):
            b.set_gid(f"cell:{cat}|{ser}")
            b.set_visible(not np.isnan(v))
            if not np.isnan(v):
                _mark_bar(ax, b, c, horizontal, faded)
        _error_bars(ax, x, cells, horizontal)
    ticks = (ax.set_yticks if horizontal else ax.set_xticks)
    if horizontal:
        ticks(pos, categories, fontsize=FONT)
        if not ax.yaxis_inverted():  # the first row on top, as in the table (once: the axis may be shared)
            ax.invert_yaxis()
        ax.grid(axis="x", lw=0.4, alpha=0.5)
    else:
        long = max((len(c) for c in categories), default=0) * len(categories) > 60
        ax.set_xticks(pos, categories, rotation=40 if long else 0, ha="right" if long else "center",
                      fontsize=FONT)
        ax.grid(axis="y", lw=0.4, alpha=0.5)
    ax.tick_params(labelsize=FONT)
    ax.set_axisbelow(True)


def _error_bars(ax: Any, x: np.ndarray, cells: Sequence[Cell], horizontal: bool) -> None:
    """The reproduction's std and the published value (diamond ± printed std) of one series."""
    val = np.array([c.repro if c.repro is not None else np.nan for c in cells])
    err = np.array([c.repro_std if c.repro_std is not None else 0.0 for c in cells])
    ok = ~np.isnan(val) & (err > 0)
    if ok.any():
        pts = (val[ok], x[ok]) if horizontal else (x[ok], val[ok])
        ax.errorbar(*pts, **{"xerr" if horizontal else "yerr": err[ok]}, fmt="none", ecolor="0.2",
                    elinewidth=0.8, capsize=2)
    pv = np.array([c.paper if c.paper is not None else np.nan for c in cells])
    pe = np.array([c.paper_std if c.paper_std is not None else 0.0 for c in cells])
    have = ~np.isnan(pv)
    if have.any():
        pts = (pv[have], x[have]) if horizontal else (x[have], pv[have])
        ax.errorbar(*pts, **{"xerr" if horizontal else "yerr": pe[have]}, fmt="D", ms=3.5,
                    color=PUBLISHED_COLOR, mfc="white", mew=0.9, elinewidth=0.8, capsize=2, zorder=3)


def _legend_handles(series: Sequence[str] = (), colors: Sequence[Any] = (), curves: bool = False,
                    smoke: bool = False) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    h: list[Any] = [Patch(facecolor=c, label=s) for s, c in zip(series, colors, strict=True)]
    if curves:
        h += [Line2D([], [], color="0.3", lw=1.5, marker="o", ms=4,
                     label="reproduced (mean ± std over seeds)"),
              Line2D([], [], color="0.3", lw=1.0, ls="--", marker="D", ms=3.5, mfc="white",
                     label="published"),
              Line2D([], [], ls="none", marker="o", ms=5, mfc="white", mec="0.3",
                     label="fewer seeds than asked"),
              Line2D([], [], ls="none", marker="X", ms=7, color=FLAG_COLOR,
                     label="✗ outside 2σ of published")]
    else:
        h += [Line2D([], [], ls="none", marker="D", ms=4, color=PUBLISHED_COLOR, mfc="white",
                     label="published (± printed std)"),
              Patch(facecolor="white", edgecolor=FLAG_COLOR, lw=2.2, label="✗ outside 2σ of published"),
              Patch(facecolor="white", edgecolor=PARTIAL_COLOR, hatch="////", label="fewer seeds than asked")]
    if smoke:
        h.append(Patch(facecolor="0.6", alpha=0.45, label="pale: smoke run (no verdict)"))
    return h


def _title(spec: Any, subtitle: str) -> str:
    import textwrap

    lines = textwrap.wrap(f"Table {spec.id}: {spec.title}", 100)
    return "\n".join(lines + textwrap.wrap(subtitle, 110))


def _plot_bars(spec: Any, get: Callable[[str, str], Cell], opts: Mapping[str, Any], faded: bool) -> Any:
    import matplotlib.pyplot as plt

    metrics, exps = _axes(spec)
    colors = _series_colors(len(exps))
    width = min(MAX_WIDTH_IN, max(6.0, 0.13 * len(metrics) * len(exps) + 1.8))
    fig, ax = plt.subplots(figsize=(width, 4.6), layout="constrained")
    _bars(ax, metrics, exps, colors, get, faded=faded)
    if opts.get("y_label"):
        ax.set_ylabel(str(opts["y_label"]), fontsize=FONT)
    fig.legend(handles=_legend_handles(exps, colors, smoke=faded), fontsize=FONT, ncol=min(6, len(exps) + 3),
               loc="outside lower center", frameon=False)
    return fig


def _grid(n: int, panel_in: float, label_in: float) -> tuple[int, int, float]:
    """(rows, columns, width) of ``n`` panels in at most :data:`MAX_WIDTH_IN` inches."""
    ncols = max(1, min(n, int((MAX_WIDTH_IN - label_in) // panel_in)))
    return math.ceil(n / ncols), ncols, min(MAX_WIDTH_IN, label_in + panel_in * ncols)


def _panels(axes: Any, n: int) -> list[Any]:
    """The first ``n`` axes of a grid of panels, row by row; the others are hidden."""
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return flat[:n]


def _plot_panels(spec: Any, get: Callable[[str, str], Cell], opts: Mapping[str, Any], faded: bool) -> Any:
    import matplotlib.pyplot as plt

    metrics, exps = _axes(spec)
    label_in = min(3.2, 0.075 * max(map(len, exps)) + 0.3)
    nrows, ncols, width = _grid(len(metrics), 2.7, label_in)
    height = max(2.2, 0.24 * len(exps) + 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows + 0.9), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, m in zip(_panels(axes, len(metrics)), metrics, strict=True):

        def get_one(exp: str, _m: str, m: str = m) -> Cell:
            return get(m, exp)

        _bars(ax, exps, [m], [SERIES_COLORS[0]], get_one, horizontal=True, faded=faded)
        ax.set_title(m, fontsize=FONT + 1)
        if opts.get("x_label"):
            ax.set_xlabel(str(opts["x_label"]), fontsize=FONT)
    fig.legend(handles=_legend_handles(smoke=faded), fontsize=FONT, ncol=4, loc="outside lower center",
               frameon=False)
    return fig


def _plot_grouped_stats(spec: Any, get: Callable[[str, str], Cell], opts: Mapping[str, Any],
                        faded: bool) -> Any:
    import matplotlib.pyplot as plt

    metrics, exps = _axes(spec)
    groups, stats, where = _stat_groups(metrics, str(opts.get("group_pattern", DEFAULT_GROUP_PATTERN)))  # type: ignore[misc]
    colors = _series_colors(len(exps))
    nrows, ncols, width = _grid(len(stats), max(2.5, (0.5 + 0.14 * len(exps)) * len(groups)), 0.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.4 * nrows + 1.0), squeeze=False,
                             layout="constrained")
    for ax, st in zip(_panels(axes, len(stats)), stats, strict=True):
        present = [g for g in groups if (g, st) in where]

        def get_st(g: str, exp: str, st: str = st) -> Cell:
            return get(where[(g, st)], exp)

        _bars(ax, present, exps, colors, get_st, faded=faded)
        ax.set_title(st, fontsize=FONT + 1)
        if opts.get("y_label"):
            ax.set_ylabel(str(opts["y_label"]), fontsize=FONT)
    fig.legend(handles=_legend_handles(exps, colors, smoke=faded), fontsize=FONT, ncol=min(6, len(exps) + 3),
               loc="outside lower center", frameon=False)
    return fig


def _curve_x(xs: Sequence[float], scale: str) -> tuple[np.ndarray, str]:
    pos_vals = [x for x in xs if x > 0]
    if scale == "auto":
        spread = max(pos_vals) / min(pos_vals) if pos_vals else 1.0
        scale = "category" if spread > 50 else "linear"
    if scale == "log" and len(pos_vals) < len(xs):
        scale = "category"  # a zero level has no place on a log axis
    return (np.arange(len(xs), dtype=float) if scale == "category" else np.asarray(xs)), scale


def _curve(ax: Any, xpos: np.ndarray, cells: Sequence[Cell], col: Any, label: str, faded: bool) -> None:
    """One row as a line (± std band), its published values dashed, fewer-seed points hollow, flags ✗."""
    y = np.array([c.repro if c.repro is not None else np.nan for c in cells])
    s = np.array([c.repro_std if c.repro_std is not None else 0.0 for c in cells])
    alpha = 0.45 if faded and any(c.smoke for c in cells) else 1.0
    if not np.isnan(y).all():
        ax.plot(xpos, y, color=col, lw=1.5, alpha=alpha, label=label, gid=f"row:{label}")
        ax.fill_between(xpos, y - s, y + s, color=col, alpha=0.15 * alpha, lw=0)
        part = np.array([c.partial for c in cells])
        ax.plot(xpos[~part], y[~part], ls="none", marker="o", ms=4, color=col, alpha=alpha)
        ax.plot(xpos[part], y[part], ls="none", marker="o", ms=5, mfc="white", mec=col, mew=1.3, alpha=alpha,
                gid="fewer-seeds")
    p = np.array([c.paper if c.paper is not None else np.nan for c in cells])
    if not np.isnan(p).all():
        ax.plot(xpos, p, color=col, lw=1.0, ls="--", marker="D", ms=3.5, mfc="white",
                label=None if not np.isnan(y).all() else label)
    out = np.array([c.outside for c in cells])
    if out.any():
        ax.plot(xpos[out], y[out], ls="none", marker="X", ms=8, color=FLAG_COLOR, mec="white", mew=0.6,
                zorder=4, gid="flag")


def _plot_curves(spec: Any, get: Callable[[str, str], Cell], opts: Mapping[str, Any], faded: bool) -> Any:
    import matplotlib.pyplot as plt

    metrics, exps = _axes(spec)
    sweep = _sweep_values(metrics)
    if sweep is None:
        raise ValueError(f"table {spec.id}: figure kind 'curves' needs metric labels '<name>=<number>' "
                         f"(e.g. 'sigma=0.02'); got {metrics[:3]}...")
    name, xs = sweep
    xpos, scale = _curve_x(xs, str(opts.get("x_scale", "auto")))
    fig, ax = plt.subplots(figsize=(10.5, 4.8), layout="constrained")
    for exp, col in zip(exps, _series_colors(len(exps)), strict=True):
        _curve(ax, xpos, [get(m, exp) for m in metrics], col, exp, faded)
    if scale == "category":
        ax.set_xticks(xpos, [f"{x:g}" for x in xs])
    elif scale == "log":
        ax.set_xscale("log")
    ax.set_xlabel(str(opts.get("x_label") or name or "level"), fontsize=FONT + 1)
    if opts.get("y_label"):
        ax.set_ylabel(str(opts["y_label"]), fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.grid(lw=0.4, alpha=0.5)
    handles, _ = ax.get_legend_handles_labels()
    fig.legend(handles=handles + _legend_handles(curves=True, smoke=faded), fontsize=FONT,
               loc="outside right center", frameon=False)
    return fig


_PLOTTERS = {"bars": _plot_bars, "panels": _plot_panels, "grouped_stats": _plot_grouped_stats,
             "curves": _plot_curves}


def table_figure(spec: Any, get: Callable[[str, str], Cell], subtitle: str = "") -> Any:
    """The matplotlib figure of one table (``None`` for kind ``none``): ``get(metric label, experiment
    label)`` gives each cell; ``subtitle`` (the runs' data set and settings) goes under the title. Smoke
    cells are drawn pale when the figure also has cells with a verdict."""
    import matplotlib

    matplotlib.use("Agg")
    kind = figure_kind(spec)
    if kind == "none":
        return None
    metrics, exps = _axes(spec)
    shown = [get(m, e) for m in metrics for e in exps]
    faded = any(c.smoke for c in shown) and any(c.repro is not None and not c.smoke for c in shown)
    fig = _PLOTTERS[kind](spec, get, figure_options(spec.figure or {}, spec.id), faded)
    fig.suptitle(_title(spec, subtitle), fontsize=FONT + 1)
    return fig


def plot_table(spec: Any, get: Callable[[str, str], Cell], out_dir: str | Path, subtitle: str = "",
               formats: Sequence[str] = ("png",), dpi: int = FIGURE_DPI) -> list[Path]:
    """Draw one table (:func:`table_figure`) as ``<out_dir>/<stem>.<fmt>``; returns the files written
    (none for kind ``none``)."""
    import matplotlib.pyplot as plt

    fig = table_figure(spec, get, subtitle)
    if fig is None:
        return []
    try:
        return save_figure(fig, out_dir, spec.stem, formats, dpi=dpi)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- Dutta (2019) Fig. 2.4


def occlusion_image(source: str = "auto", data_dir: str | Path = "data", index: int = 0) -> tuple[Any, str]:
    """One test image ``(C, H, W)`` in [0, 1] and where it came from.

    ``source``: ``cifar10`` (the verified CIFAR-10 test set under ``data_dir``; a ``DataError`` naming
    the fix when it is absent), ``digits`` (scikit-learn's digits as the project's 32×32 RGB images) or
    ``auto`` (CIFAR-10 when its files are present and verified, else digits).
    """
    import torch

    if source not in ("auto", "cifar10", "digits"):
        raise ValueError(f"image source {source!r}; valid: auto, cifar10, digits")
    if source in ("auto", "cifar10"):
        from bioreg.data.cifar10 import CIFAR10Files
        from bioreg.data.errors import DataError

        try:
            CIFAR10Files.verify(data_dir)
        except DataError:
            if source == "cifar10":
                raise
        else:
            ds = CIFAR10Files(str(data_dir), train=False, download=False)
            if not 0 <= index < len(ds.data):
                raise ValueError(f"image index {index} is out of range; valid: 0..{len(ds.data) - 1}")
            img = torch.from_numpy(np.ascontiguousarray(ds.data[index])).permute(2, 0, 1).float() / 255.0
            return img, f"CIFAR-10 test image {index} ({ds.classes[int(ds.targets[index])]})"
    from bioreg.data.digits import load_digits_tensor

    x, y = load_digits_tensor()
    if not 0 <= index < len(x):
        raise ValueError(f"image index {index} is out of range; valid: 0..{len(x) - 1}")
    return x[index], f"digits image {index} (a '{int(y[index])}'; CIFAR-10 is not present)"


def fig_occlusions(image: Any, out_dir: str | Path, caption: str = "", params: Any = None,
                   formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Dutta (2019) Fig. 2.4: ``image`` and the six occlusions of §2.4.3 (``fig_2_4.<fmt>``).

    The occluded images come from :func:`bioreg.data.occlusion.occlude` with ``params`` (default: the
    geometry every data preset uses, :class:`~bioreg.data.occlusion.OcclusionParams`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bioreg.data.occlusion import OCCLUSION_KINDS, OcclusionParams, occlude, occlusion_mask

    p = OcclusionParams.from_dict(params)
    names = {"central": "Central Occlusion", "checkerboard": "Checker Board",
             "horizontal_bars": "Horizontal Bars",
             "vertical_bars": "Vertical Bars", "horizontal_half": "Horizontal Half",
             "vertical_half": "Vertical Half"}
    h, w = image.shape[-2:]
    panels = [("Original", image, None)] + [(names[k], occlude(image, k, p), occlusion_mask(k, h, w, p))
                                           for k in OCCLUSION_KINDS]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 * len(panels), 2.2))
    for ax, (title, x, mask) in zip(axes, panels, strict=True):
        ax.imshow(x.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        if mask is not None:  # outline the occluder: on a dark background it is otherwise invisible
            ax.contour(mask.float().numpy(), levels=[0.5], colors=FLAG_COLOR, linewidths=0.7)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Dutta (2019) Fig. 2.4: the six occlusions (coloured line: outline of the occluder)"
                 + (f" — {caption}" if caption else ""), fontsize=9)
    fig.tight_layout()
    try:
        return save_figure(fig, out_dir, "fig_2_4", formats, dpi=150)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- Singh (2023) Fig. 3.11


def ewma(values: Sequence[float], weight: float) -> np.ndarray:
    """Exponentially weighted moving average ``s_t = w·s_{t−1} + (1 − w)·x_t``, ``s_0 = x_0``
    (w in [0, 1))."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight {weight!r}; valid range: [0, 1)")
    out = np.empty(len(values))
    s = None
    for i, v in enumerate(values):
        s = float(v) if s is None else weight * s + (1.0 - weight) * float(v)
        out[i] = s
    return out


def loss_histories(records: Any, experiments: Sequence[str], seeds: Sequence[int], column: str = "val/loss",
                   pins: Mapping[str, str] | None = None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Per experiment, the per-epoch ``column`` of its runs' CSV logs (``<run_dir>/csv/metrics.csv``),
    one column per seed; and a list of what was not found (for the "skipped because" line)."""
    from bioreg.results.aggregate import select_runs
    from bioreg.results.records import RecordStore

    sel = select_runs(records, experiments, seeds, pins)
    store = RecordStore(records.root) if records.root is not None else None
    out: dict[str, pd.DataFrame] = {}
    missing: list[str] = []
    for exp in experiments:
        per_seed = {}
        for seed in seeds:
            key = sel.chosen.get((exp, int(seed)))
            if key is None or store is None:
                continue
            rec = store.load(exp, key, int(seed)) or {}
            if not rec.get("run_dir"):
                missing.append(f"{exp} seed {seed}: its record names no run directory")
                continue
            csv = Path(str(rec["run_dir"])) / "csv" / "metrics.csv"
            if not csv.is_file():
                missing.append(f"{exp} seed {seed}: no CSV log at {csv} (logger=none, or the run moved)")
                continue
            log = pd.read_csv(csv)
            if column not in log.columns or "epoch" not in log.columns:
                missing.append(f"{exp} seed {seed}: {csv} has no {column!r} column")
                continue
            s = log.dropna(subset=[column]).groupby("epoch")[column].last()
            if len(s):
                per_seed[int(seed)] = s
        if per_seed:
            out[exp] = pd.DataFrame(per_seed).sort_index()
    return out, missing


def fig_test_loss(histories: Mapping[str, pd.DataFrame], labels: Mapping[str, str], out_dir: str | Path,
                  smoothing: float = 0.6, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Singh (2023) Fig. 3.11: loss per epoch of each model (mean over seeds), log scale, EWMA-smoothed
    with ``smoothing`` as the weight of the past (the thesis names the smoothing, not its weight)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not histories:
        raise ValueError("no loss histories to plot")
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for exp, df in histories.items():
        mean = df.mean(axis=1)
        ax.plot(mean.index.to_numpy() + 1, ewma(mean.to_numpy(), smoothing), lw=1.4, marker="o", ms=2.5,
                label=f"{labels.get(exp, exp)} ({df.shape[1]} seed{'s' if df.shape[1] != 1 else ''})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out loss (log scale, EWMA-smoothed)")
    ax.set_title(f"Singh (2023) Fig. 3.11: loss across models (smoothing weight {smoothing:g})", fontsize=9)
    ax.grid(lw=0.4, alpha=0.5, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    try:
        return save_figure(fig, out_dir, "fig_3_11", formats, dpi=150)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- the sources' figures


@dataclass(frozen=True)
class SourceFigure:
    stem: str  # file name without extension, under the figure folder
    caption: str
    needs: str  # what it is built from
    command: str  # the make target that builds it


SOURCE_FIGURES: tuple[SourceFigure, ...] = (
    SourceFigure("fig_2_1",
                 "Dutta (2019) Fig. 2.1: Poisson samples vs their Gumbel-softmax approximation for "
                 "several K (eqs 2.10–2.12)", "nothing (closed form + sampling)", "make fig-2.1"),
    SourceFigure("fig_2_2",
                 "Dutta (2019) Fig. 2.2: target vs achieved correlation of the Gaussian-copula Poisson "
                 "sampler (§2.2.4)", "nothing (sampling)", "make fig-2.2"),
    SourceFigure("fig_2_3", "Dutta (2019) Fig. 2.3: correlation of eq 2.14 vs distance and tuning similarity",
                 "nothing (closed form)", "make fig-2.3"),
    SourceFigure("fig_2_4", "Dutta (2019) Fig. 2.4: the six occlusions of §2.4.3 (the evaluation's own code)",
                 "a CIFAR-10 test image, or a digits image when CIFAR-10 is absent", "make figures"),
    *(SourceFigure(f"fig_3_{n}",
                   f"Dutta (2019) Fig. 3.{n}: smoothed correlation g(d, k) of VGG-11 layer {layer} "
                   "(vanilla, mixup, manifold mixup; eq 3.6)"
                   + (", one shared colour scale" if n == 7 else ""),
                   "records of the Ch. 3 runs with extra.correlation_analysis", "make figures-ch3")
      for n, layer in ((2, 3), (3, 5), (4, 6), (5, 8), (6, 9), (7, 9))),
    SourceFigure("activation_stats_48", "Singh (2023) Figs. 3.3–3.10: activation statistics over training, "
                 "layer 48", "records with extra.activation_stats_history", "make figures-normout"),
    SourceFigure("activation_stats_51", "Singh (2023) Figs. 3.3–3.10: activation statistics over training, "
                 "layer 51", "records with extra.activation_stats_history", "make figures-normout"),
    SourceFigure("activation_mean_std_48", "Singh (2023) Fig. 3.1: mean and std of the activations, layer 48",
                 "records with extra.activation_stats", "make figures-normout"),
    SourceFigure("activation_mean_std_51", "Singh (2023) Fig. 3.2: mean and std of the activations, layer 51",
                 "records with extra.activation_stats", "make figures-normout"),
    SourceFigure("fig_3_11", "Singh (2023) Fig. 3.11: loss across the models of Table 3.2 over training "
                 "(held-out split, log scale, smoothed)",
                 "records of the Table n3.2 models with their CSV logs",
                 "make figures"),
)

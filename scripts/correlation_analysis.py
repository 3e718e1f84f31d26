#!/usr/bin/env python
"""Dutta (2019) Ch. 3: the activation-correlation analysis of the three VGG-11 networks (Table 3.2,
Figures 3.2–3.7) from their run records and best checkpoints.

    python scripts/correlation_analysis.py                                  # analyse + figures
    python scripts/correlation_analysis.py --results-dir results/runs --data digits
    python scripts/correlation_analysis.py --figures-only                  # figures from the records
    python scripts/correlation_analysis.py --samples 20 --batch 32 --layers 3 9 --force

For every completed record of ``--experiments`` (default the three Ch. 3 networks) and seed, the
model is rebuilt from the record's config, its ``<ckpt_dir>/best.ckpt`` loaded, and
:class:`bioreg.evaluate.correlation_analysis.CorrelationAnalysis` run at ``--layers``; the result is
written into the record as ``extra.correlation_analysis`` (per layer: the four statistics of the
off-diagonal of Σ′, the Linear Exponential statistics under each distance scale, the distance
profile and the smoothed grid ``g(d, k)``) and the exact binned smoother data into
``seed<k>.correlation_bins.npz`` beside the record. A record that already has the section with the
same settings is skipped (``--force`` recomputes). Then Figures 3.2–3.6 (one per layer: contour
plots of ``g(d, k)`` for the three networks side by side, per-panel colour bars) and Fig 3.7
(layer 9, one shared colour scale) are drawn from the records (mean of the grids over seeds) under
``--fig-dir`` as PNG and PDF, and a short report compares the Linear Exponential readings with the
printed column. See docs/correlation_analysis.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

EXPERIMENTS = ["vgg11_ch3_vanilla", "vgg11_ch3_mixup", "vgg11_ch3_manifold_mixup"]
LABELS = {"vgg11_ch3_vanilla": "Vanilla", "vgg11_ch3_mixup": "Input Mixup",
          "vgg11_ch3_manifold_mixup": "Manifold Mixup"}
#: thesis figure per layer (Figs 3.2-3.6), and 3.7 = layer 9 with a shared colour scale
FIGURES = {"layer3": "3_2", "layer5": "3_3", "layer6": "3_4", "layer8": "3_5", "layer9": "3_6"}
SECTION = "correlation_analysis"
log = logging.getLogger("bioreg")


def _settings(args: argparse.Namespace) -> dict:
    return {"samples": args.samples, "batch": args.batch, "seed": args.analysis_seed,
            "zero_variance": args.zero_variance, "kernel": args.kernel, "bandwidth": args.bandwidth,
            "dtype": args.dtype, "tile_units": args.tile_units}


def _same_settings(section: dict, layers: list[str], want: dict) -> bool:
    got = (section or {}).get("layers") or {}
    if not all(name in got for name in layers):
        return False
    s = got[layers[0]].get("settings") or {}
    return all(s.get(k) == want[k2] for k, k2 in (("S", "samples"), ("B", "batch"), ("seed", "seed"),
                                                  ("zero_variance", "zero_variance"), ("kernel", "kernel"),
                                                  ("bandwidth", "bandwidth"), ("dtype", "dtype")))


def bins_file(rec_path: Path) -> Path:
    """``seed<k>.correlation_bins.npz`` beside the record ``seed<k>.json``."""
    return rec_path.with_name(rec_path.stem + ".correlation_bins.npz")


def analyse_record(rec_path: Path, record: dict, args: argparse.Namespace) -> dict:
    """Rebuild the run's model, load its best checkpoint and run the analysis; returns the section."""
    import time

    import torch
    from omegaconf import OmegaConf

    from bioreg.app.build import build
    from bioreg.app.ckpt_io import safe_load
    from bioreg.config.legacy import upgrade_config
    from bioreg.evaluate.correlation_analysis import (
        AnalysisError,
        CorrelationAnalysis,
        check_checkpoint_model,
        load_test_images,
        save_bins,
    )
    from bioreg.results.records import utc_now

    ckpt = Path(record.get("ckpt_dir") or "") / "best.ckpt"
    if not ckpt.is_file():
        raise AnalysisError(f"{rec_path}: checkpoint {ckpt} not found (the analysis needs the run's best.ckpt)")
    cfg = OmegaConf.create(upgrade_config(record["config"]))  # a record of any bioreg version
    cfg.ckpt = None
    dm, lit = build(cfg)
    dm.prepare_data()
    dm.setup("fit")
    state = safe_load(ckpt, what=f"checkpoint {ckpt}")  # weights_only=True: a checkpoint runs no code
    sd = state["state_dict"] if isinstance(state, dict) and "state_dict" in state else state
    check_checkpoint_model(sd, lit, where=str(ckpt), valid=args.experiments)
    lit.load_state_dict(sd)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = lit.model.to(device).eval()
    t0 = time.time()
    ev = CorrelationAnalysis(layers=args.layers, grid=tuple(args.grid), **_settings(args))
    res = ev.run(model, load_test_images(dm), device=device, progress=not args.quiet)
    path = bins_file(rec_path)
    save_bins(str(path), res)
    return {"layers": {name: r.section() for name, r in res.items()},
            "bins_file": path.name,
            "provenance": {"ckpt": str(ckpt), "epoch": state.get("epoch") if isinstance(state, dict) else None,
                           "evaluated": utc_now(), "device": str(device), "wall_time_s": round(time.time() - t0, 1),
                           "script": "scripts/correlation_analysis.py"}}


# ----------------------------------------------------------------------------------------------- figures


def _grids(records: list[tuple[str, dict]], layer: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | None:
    """Mean over the seeds' smoothed grids of one network and layer: (d, k, g, n_seeds)."""
    gs, d, k = [], None, None
    for _, rec in records:
        sec = (((rec.get("extra") or {}).get(SECTION) or {}).get("layers") or {}).get(layer)
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


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    from bioreg.io import save_figure  # atomic PNG + PDF

    return save_figure(fig, out_dir, stem, ("png", "pdf"), dpi=150, close=True)


def make_figures(by_exp: dict[str, list[tuple[str, dict]]], layers: list[str], out_dir: Path) -> list[Path]:
    """Figs 3.2-3.6 (per-panel colour bars) and Fig 3.7 (layer 9, one shared colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: list[Path] = []
    jobs = [(layer, FIGURES[layer], False) for layer in layers if layer in FIGURES]
    if "layer9" in layers:
        jobs.append(("layer9", "3_7", True))
    for layer, fig_id, shared in jobs:
        panels = [(exp, _grids(by_exp.get(exp, []), layer)) for exp in by_exp]
        panels = [(e, g) for e, g in panels if g is not None]
        if not panels:
            log.warning("no %s section for %s in the records: Fig %s skipped", SECTION, layer, fig_id.replace("_", "."))
            continue
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
        out += _save(fig, out_dir, f"fig_{fig_id}")
    return out


def linear_exponential_report(by_exp: dict[str, list[tuple[str, dict]]], layers: list[str]) -> list[str]:
    """Which reading of eq 2.14's distance reproduces the printed Linear Exponential column."""
    import pandas as pd

    from bioreg.results.tables import PAPER_DIR

    paper = pd.read_csv(PAPER_DIR / "dutta2019_table_3_2.csv")
    paper = paper[paper["column"] == "Linear Exponential"].set_index("row")["mean"]
    names = {"max": "Max.", "min": "Min.", "mean": "Mean", "std": "Std."}
    recs = by_exp.get(EXPERIMENTS[0], [])
    lines, err = [], {}
    for layer in layers:
        num = layer.removeprefix("layer")
        for scale in ("grid", "input_pixels"):
            vals = {}
            for key in names:
                xs = [(((r.get("extra") or {}).get(SECTION) or {}).get("layers") or {}).get(layer, {})
                      .get("linear_exponential", {}).get(scale, {}).get(key) for _, r in recs]
                xs = [x for x in xs if x is not None]
                if xs:
                    vals[key] = float(np.mean(xs))
            if not vals:
                continue
            printed = {k: paper.get(f"Layer {num} {n}") for k, n in names.items()}
            diffs = [abs(vals[k] - printed[k]) for k in vals if printed.get(k) is not None]
            err.setdefault(scale, []).extend(diffs)
            lines.append(f"  layer {num} {scale:>12}: " + ", ".join(
                f"{k} {vals[k]:.3f} (printed {printed[k]})" for k in vals))
    if err:
        best = min(err, key=lambda s: max(err[s]))
        lines.append("  largest |difference| to the printed column: " + ", ".join(
            f"{s} {max(v):.3f}" for s, v in err.items()) + f" -> closest reading: {best}")
    return lines


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    from bioreg.evaluate.correlation_analysis import KERNELS, THESIS_LAYERS, ZERO_VARIANCE

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results-dir", default="results/runs", help="run records (default: results/runs)")
    ap.add_argument("--data", default=None, metavar="NAME", help="only runs trained on this data set (digits, cifar10)")
    ap.add_argument("--pin", action="append", default=[], metavar="EXPERIMENT=CONFIG_KEY",
                    help="use only this config key for the experiment (resolves duplicates)")
    ap.add_argument("--experiments", nargs="+", default=EXPERIMENTS, help="default: the three Ch. 3 networks")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--layers", nargs="+", default=[str(k) for k in THESIS_LAYERS],
                    help="thesis layer numbers or point names (default 3 5 6 8 9)")
    ap.add_argument("--samples", type=int, default=100, help="S fixed test images (thesis: 100)")
    ap.add_argument("--batch", type=int, default=64, help="B mixed partners / λ values per image (default 64)")
    ap.add_argument("--analysis-seed", type=int, default=0, help="seed of the image / partner draw")
    ap.add_argument("--zero-variance", default="zero", choices=ZERO_VARIANCE,
                    help="units that do not vary in an image: zero = correlation 0 there (default), exclude = average only where defined")
    ap.add_argument("--kernel", default="gaussian", choices=KERNELS, help="eq 3.6 kernel (gaussian = squared norm)")
    ap.add_argument("--bandwidth", type=float, default=0.25, help="b of eq 3.6")
    ap.add_argument("--grid", nargs=2, type=int, default=[41, 41], metavar=("ND", "NK"))
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--tile-units", type=int, default=2048)
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    ap.add_argument("--fig-dir", default="results/figures", type=Path)
    ap.add_argument("--figures-only", action="store_true", help="only draw the figures from the records")
    ap.add_argument("--force", action="store_true", help="recompute sections that exist with the same settings")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s")

    from bioreg.app.evaluate_checkpoint import add_sections, record_files
    from bioreg.errors import UserError
    from bioreg.results.aggregate import load_records, parse_pins, select_runs

    try:
        from bioreg.evaluate.correlation_analysis import CorrelationAnalysis

        CorrelationAnalysis(layers=args.layers, grid=tuple(args.grid), **_settings(args))  # bad options fail here
        records = load_records(args.results_dir, data=args.data)
        sel = select_runs(records, args.experiments, tuple(args.seeds), parse_pins(args.pin))
    except ValueError as e:  # AnalysisError (a UserError and a ValueError), bad pins
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in sel.notes():
        log.warning(note)
    runs = records.runs.set_index(["name", "config_key", "seed"])["path"]
    chosen = sorted(sel.chosen.items(), key=lambda kv: (args.experiments.index(kv[0][0]), kv[0][1]))
    if not chosen:
        print(f"error: no completed record of {', '.join(args.experiments)} in {args.results_dir}"
              f"{' for data ' + args.data if args.data else ''}; train them first (make reproduce-table-3.2)",
              file=sys.stderr)
        return 2
    layers = [k if str(k).startswith("layer") else f"layer{k}" for k in args.layers]
    by_exp: dict[str, list[tuple[str, dict]]] = {e: [] for e in args.experiments}
    want = _settings(args)
    for (exp, seed), key in chosen:
        path = Path(runs.loc[(exp, key, seed)])
        record = json.loads(path.read_text())
        sec = (record.get("extra") or {}).get(SECTION)
        if not args.figures_only and (args.force or not _same_settings(sec, layers, want)):
            log.info("analysing %s seed %d (%s)", exp, seed, path)
            try:
                sec = analyse_record(path, record, args)
            except UserError as e:  # AnalysisError, an unreadable or unsafe checkpoint, ...
                print(f"error: {e}", file=sys.stderr)
                return 2
            for p in add_sections(record_files(path, record), {SECTION: sec}):
                log.info("updated %s: extra.%s", p, SECTION)
            record = json.loads(path.read_text())
        by_exp[exp].append((str(path), record))
        if sec:
            st = " | ".join(f"{n}: max {v['max']:.2f} min {v['min']:.2f} mean {v['mean']:.2f} std {v['std']:.2f}"
                            for n, v in sec["layers"].items() if n in layers)
            print(f"{LABELS.get(exp, exp)} seed {seed}: {st}")
    args.fig_dir.mkdir(parents=True, exist_ok=True)
    for p in make_figures(by_exp, layers, args.fig_dir):
        print(f"wrote {p}")
    rep = linear_exponential_report(by_exp, layers)
    if rep:
        print("Linear Exponential column (eq 2.14 with the vanilla network's kernels) vs the printed one:")
        print("\n".join(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every figure of the sources that can be built from what is present, and a figure per table
(``make figures``; ``scripts/make_figures.py`` is its command line).

    python scripts/make_figures.py [--results-dir results/runs] [--out-dir results/figures]
                                   [--data-dir data] [--data digits] [--pin EXP=KEY] [--no-tables]

Builds, under ``--out-dir``:

* ``tables/table_<id>.{png,pdf}`` — each table with records, drawn from the report's cells
  (bioreg.results.figures.plot_table: mean ± std over seeds beside the published value, the
  runs' data set and settings in the title; smoke runs labelled); not with ``--no-tables``
  (``make report`` draws its own);
* ``fig_2_4`` — Dutta (2019) Fig. 2.4: a CIFAR-10 test image (a digits image when CIFAR-10 is not
  under ``--data-dir``) under the six occlusions of the evaluation code;
* ``fig_3_11`` — Singh (2023) Fig. 3.11: held-out loss over training of the models of Table 3.2,
  from the runs' CSV logs;
* ``activation_*`` — Singh (2023) Figs. 3.1–3.10 (scripts/fig_activation_stats.py), when records
  with activation statistics exist.

Figs. 2.1–2.3 (closed forms, no data) are built by ``make figures-ch2``, which ``make figures``
runs first. The last lines list every source figure: built, present, or skipped and why; the same
statuses go to ``<out-dir>/figures_status.json``, from which ``make report`` shows a figure only
when it was built (a curve needs at least two epochs of history: a one-epoch run is skipped, not
drawn as empty axes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from bioreg.io import atomic_write_json
from bioreg.results.aggregate import add_record_options, records_from_args
from bioreg.results.figures import (
    SOURCE_FIGURES,
    fig_occlusions,
    fig_test_loss,
    loss_histories,
    occlusion_image,
    plot_table,
)
from bioreg.results.protocol import DEFAULT_READING, get_protocol
from bioreg.results.report import build_table_report, table_runs
from bioreg.results.report_page import STATUS_FILE, figure_cells, figure_subtitle
from bioreg.results.tables import load_paper, load_spec, table_ids

LOSS_TABLE = "n3.2"  # Fig. 3.11 shows "the best performing models": the rows of Singh's Table 3.2


def table_figures(records, pins, out: Path, formats) -> None:
    """A figure per table with values, drawn from the report's cells (the same as ``make report``)."""
    drawn, empty = [], []
    for tid in table_ids():
        spec = load_spec(tid)
        t = build_table_report(spec, records, _runs(spec, records), DEFAULT_READING, pins=pins,
                               paper=load_paper(spec), protocol=get_protocol(spec.protocol))
        if not any(c.stats.n or c.smoke_stats.n for c in t.cells):
            empty.append(tid)
            continue
        if plot_table(spec, figure_cells(t), out / "tables", figure_subtitle(t), formats):
            drawn.append(tid)
    print(f"table figures: {len(drawn)} built under {out / 'tables'} ({', '.join(drawn) or 'none'}); "
          f"{len(empty)} skipped: no records with values ({', '.join(empty) or 'none'})")


def _runs(spec, records):
    return table_runs(spec, records, get_protocol(spec.protocol))


def fig_2_4(args, out: Path) -> str:
    try:
        img, caption = occlusion_image(args.image_source, args.data_dir, args.image_index)
        fig_occlusions(img, out, caption, formats=args.formats)
        return f"built ({caption})"
    except Exception as e:  # noqa: BLE001 - reported, not fatal: the other figures still get built
        return f"skipped: {type(e).__name__}: {e}"


def fig_3_11(args, records, pins, out: Path) -> str:
    spec = load_spec(LOSS_TABLE)
    labels = {r.experiment: r.label for r in spec.rows if r.experiment}
    hist, missing = loss_histories(records, spec.experiments, spec.seeds, pins=pins)
    longest = max((len(df) for df in hist.values()), default=0)
    if hist and longest >= 2:
        fig_test_loss(hist, labels, out, smoothing=args.smoothing, formats=args.formats)
        return f"built ({len(hist)} of {len(spec.experiments)} models)"
    if hist:
        return (f"skipped: the runs' logs hold {longest} epoch of held-out loss; a curve over training needs "
                "at least 2 epochs")
    why = missing[0] if missing else (f"no completed records of the Table {LOSS_TABLE} models in "
                                      f"{args.results_dir}")
    return f"skipped: {why}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")


def ch3_figures(args, out: Path, status: dict[str, str]) -> None:
    """Dutta (2019) Figs. 3.2-3.7: drawn from the records' correlation sections by the analysis script."""
    script = args.scripts_dir / "correlation_analysis.py"
    cmd = [sys.executable, str(script), "--figures-only", "--results-dir", args.results_dir,
           "--fig-dir", str(out)]
    run = subprocess.run(cmd + (["--data", args.data] if args.data else []), capture_output=True, text=True)
    text = (run.stdout + run.stderr).strip().splitlines()
    for f in SOURCE_FIGURES:
        if f.stem.startswith("fig_3_") and f.stem != "fig_3_11":
            why = [ln for ln in text if ln.startswith("error:")] or [f"no Fig {f.stem[4:].replace('_', '.')} "
                                                                     "section in the Ch. 3 records"]
            built = any(ln.startswith("wrote") and f"{f.stem}.png" in ln for ln in text)
            status[f.stem] = "built" if built else "skipped: " + why[0].removeprefix("error: ")


def activation_figures(args, out: Path, status: dict[str, str]) -> None:
    """Singh (2023) Figs. 3.1-3.10: their own script, which says per point why it drew nothing."""
    script = args.scripts_dir / "fig_activation_stats.py"
    run = subprocess.run([sys.executable, str(script), "--results-dir", args.results_dir, "--out", str(out)],
                         capture_output=True, text=True)
    text = (run.stdout + run.stderr).strip().splitlines()
    for f in SOURCE_FIGURES:
        if not f.stem.startswith("activation_"):
            continue
        point = f.stem.rsplit("_", 1)[1]
        if any(f"{f.stem}.png" in ln for ln in text):
            status[f.stem] = "built"
        else:
            why = [ln for ln in text if ln.startswith(f"point {point}:")] or text[-1:]
            status[f.stem] = "skipped: " + (why[0] if why else f"exit code {run.returncode}")


def report_status(out: Path, status: dict[str, str]) -> None:
    """Print every source figure's status and write them to ``<out>/figures_status.json``."""
    print("source figures:")
    for f in SOURCE_FIGURES:
        s = status.get(f.stem)
        if s is None:
            s = (f"present ({f.command})" if (out / f"{f.stem}.png").is_file()
                 else f"not built: `{f.command}` builds it from {f.needs}")
            status[f.stem] = s
        elif s.startswith("skipped") and (out / f"{f.stem}.png").is_file():
            s += f" — an older {f.stem}.png is still in {out} (make report does not show it)"
        print(f"  {f.stem:24s} {s}")
    atomic_write_json(out / STATUS_FILE, status)


def main(argv: list[str] | None = None, scripts_dir: Path | None = None) -> int:
    """The command line of ``scripts/make_figures.py``; ``scripts_dir``: where the Ch. 3 analysis and the
    activation-figure scripts are (default: this checkout's ``scripts/``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="results/figures", type=Path)
    ap.add_argument("--data-dir", default="data", help="where CIFAR-10 is looked for (Fig. 2.4)")
    ap.add_argument("--image-source", default="auto", choices=("auto", "cifar10", "digits"),
                    help="Fig. 2.4's image: CIFAR-10 when present (auto), or force one")
    ap.add_argument("--image-index", type=int, default=0, help="index of Fig. 2.4's test image (default 0)")
    ap.add_argument("--smoothing", type=float, default=0.6, help="EWMA weight of Fig. 3.11 (default 0.6)")
    ap.add_argument("--formats", nargs="+", default=["png", "pdf"], choices=("png", "pdf", "svg"))
    ap.add_argument("--no-tables", action="store_true",
                    help="only the sources' figures (make report draws the tables itself)")
    add_record_options(ap)
    args = ap.parse_args(argv)
    args.scripts_dir = scripts_dir or Path(__file__).resolve().parents[3] / "scripts"
    try:
        records, pins = records_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out: Path = args.out_dir
    if not args.no_tables:
        table_figures(records, pins, out, args.formats)
    status = {"fig_2_4": fig_2_4(args, out), "fig_3_11": fig_3_11(args, records, pins, out)}
    if Path(args.results_dir).is_dir():
        ch3_figures(args, out, status)
        activation_figures(args, out, status)
    report_status(out, status)
    return 0

"""Render the :class:`~bioreg.results.report.Report` and write it to disk.

One object, two renderings from Jinja2 templates (``templates/report.md.j2``,
``templates/report.html.j2`` with ``cell.html.j2`` and ``table_trace.html.j2``):

* :func:`write_compare` — ``make compare``: the Markdown alone (``results/REPORT.md``), without
  figures or run links;
* :func:`write_report` — ``make report``: a self-contained folder (``results/report/``):
  ``index.html`` and ``index.md``; ``figures/`` (a figure per table drawn from the report's cells,
  PNG + PDF, and the sources' figures that were built); ``tables/<table>.csv`` (every cell with its
  per-seed values and verdict); ``runs/`` (a copy of every record the page shows, its resolved
  config, Hydra overrides, log and metrics CSV where the run directory still has them). Files are
  written atomically; files of an earlier report that this one no longer has are removed from
  those three folders.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bioreg.io import atomic_write_bytes, atomic_write_text
from bioreg.results.aggregate import STD_DDOF
from bioreg.results.claim_stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    UNTESTABLE,
    comparison_rows,
    summary,
)
from bioreg.results.claim_stats.seedwise import CI_METHOD
from bioreg.results.compare import FEW_SEEDS, FLAG_K, MIN_SEEDS, NO_PUBLISHED, NO_SIGMA, OUTSIDE, WITHIN
from bioreg.results.figures import FIGURE_DPI, SOURCE_FIGURES, Cell, plot_table
from bioreg.results.protocol import data_name
from bioreg.results.provenance import RunInfo
from bioreg.results.report import NO_VERDICT, SMOKE, STAT_VERDICTS, CellReport, ClaimRow, Report, TableReport

__all__ = ["render_html", "render_markdown", "write_report", "write_compare", "figure_cells",
           "figure_subtitle", "claim_view", "interval_text", "STATUS_FILE", "MAX_COPY_BYTES"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
#: ``make figures`` writes each source figure's status (built / skipped: why) here, in its folder
STATUS_FILE = "figures_status.json"
#: logs and records larger than this are copied as their last MAX_COPY_BYTES bytes
MAX_COPY_BYTES = 2_000_000


# ----------------------------------------------------------------------------- template helpers


def _fmt(x: Any, f: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(float(x), f)


def _md(s: Any) -> str:
    return str(s).replace("|", r"\|").replace("\n", "<br>")


def _verdict_class(cell: CellReport) -> str:
    return {WITHIN: "within", OUTSIDE: "outside", SMOKE: "smoke"}.get(cell.verdict, "none")


def _verdict_text(cell: CellReport) -> str:
    return {FEW_SEEDS: f"{cell.stats.n} seed{'s' if cell.stats.n != 1 else ''} < {MIN_SEEDS}: no verdict",
            NO_SIGMA: "no σ (the seeds agree exactly): no verdict",
            NO_PUBLISHED: "no published value"}.get(cell.verdict, cell.verdict)


def _seed_summary(cell: CellReport) -> str:
    parts = []
    if cell.values:
        ci = " · 95 % CI" if cell.interval is not None and cell.interval.low is not None else ""
        parts.append(f"{len(cell.values)} seed{'s' if len(cell.values) != 1 else ''}{ci}")
    if cell.smoke_values:
        parts.append(f"{len(cell.smoke_values)} smoke")
    return " + ".join(parts) or "runs"


_LINK_NAMES = ("record", "config", "overrides", "log", "metrics")


def _run_links(run: RunInfo | None) -> Any:
    import markupsafe

    if run is None or not run.links:
        return ""
    link = markupsafe.Markup('<a href="{}">{}</a>')
    links = [link.format(run.links[k], k) for k in _LINK_NAMES if k in run.links]
    return markupsafe.Markup(" · ") + markupsafe.Markup(" ").join(links)


def _md_links(run: RunInfo | None) -> str:
    if run is None or not run.links:
        return ""
    return " — " + " · ".join(f"[{k}]({run.links[k]})" for k in _LINK_NAMES if k in run.links)


def _md_grid(t: TableReport) -> str:
    """The table's cells as a Markdown table (printed layout)."""
    cols = [c.label for c in t.spec.columns]
    lines = ["| | " + " | ".join(_md(c) for c in cols) + " |", "|---|" + "--:|" * len(cols)]
    for row, cells in t.grid():
        lines.append(f"| {_md(row)} | " + " | ".join(_md_cell(c, t) for c in cells) + " |")
    return "\n".join(lines)


def _md_cell(cell: CellReport, t: TableReport) -> str:
    f = t.spec.number_format
    if cell.is_smoke:
        parts = [f"*{cell.text(f)}* – smoke"]
    elif cell.stats.n:
        parts = [f"{cell.text(f)} {cell.glyph}"]
    else:
        parts = ["–"]
    if cell.published:
        parts.append(f"paper {cell.published}")
    if cell.stats.n and not cell.is_smoke:
        parts.append(cell.z_text if cell.has_verdict else _verdict_text(cell))
    ci = interval_text(cell, f)
    if ci:
        parts.append(ci)
    return _md("<br>".join(parts))


def interval_text(cell: CellReport, number_format: str, long: bool = False) -> str:
    """The cell's 95 % interval and whether the published value lies in it: ``95 % CI [79.0, 81.0],
    paper inside`` (``long``: with the method and the reason when there is none); "" without one."""
    iv = cell.interval
    if iv is None or not cell.values:
        return ""
    level = f"{round(100 * iv.level)} % CI"
    if iv.low is None or iv.high is None:
        return f"no {level}: {iv.reason}" if long else ""
    text = f"{level} [{_fmt(iv.low, number_format)}, {_fmt(iv.high, number_format)}]"
    if long:
        text = (f"{round(100 * iv.level)} % interval of the mean (Student t, {iv.n} seeds): "
                f"[{_fmt(iv.low, number_format)}, {_fmt(iv.high, number_format)}]")
    if iv.contains_published is None:
        return text + (" (no published value)" if long else "")
    where = "inside" if iv.contains_published else "outside"
    return text + (f"; the published {_fmt(iv.published, number_format)} lies {where}" if long
                   else f", paper {where}")


_PUBLISHED_GLYPH = {SUPPORTED: "✓", CONTRADICTED: "✗", INCONCLUSIVE: "?", UNTESTABLE: "–"}
#: the fields of a comparison row that come from the runs (the others are the printed numbers' audit)
_REPRODUCED = ("design", "difference", "p", "p_holm", "verdict")


def _comparisons(c: ClaimRow) -> list[dict[str, str]]:
    """The claim's comparison rows; for a claim that only smoke runs fill, the reproduced fields are
    the smoke runs' (labelled by ``claim_view``), their verdict left out."""
    rows = comparison_rows(c.stats) if c.stats is not None else []
    if c.smoke_stats is None:
        return rows
    smoke = comparison_rows(c.smoke_stats)
    return [{**p, **{k: s[k] for k in _REPRODUCED}, "verdict": "– (smoke runs: no verdict)"}
            for p, s in zip(rows, smoke, strict=True)]


def claim_view(c: ClaimRow) -> dict[str, Any]:
    """Everything the claims table shows of one claim, as text (both renderings): the statistical
    verdict with its glyph and why, intervals, Holm p-values, the published support, the seeds needed,
    the comparison rows, and — for a claim that only smoke runs fill — the smoke runs' intervals and
    p-values under a label that says they are no evidence."""
    v: dict[str, Any] = {
        "verdict": c.stat_verdict, "glyph": c.stat_glyph, "reason": c.stat_reason,
        "css": c.stat_verdict.replace(" ", "-"), "intervals": "–", "p_holm": "–", "count_probability": "",
        "published": "–", "published_glyph": "–", "published_detail": "", "power": "–", "method": "",
        "smoke": "", "comparisons": _comparisons(c),
        "repro_label": "smoke runs (not evidence)" if c.smoke_stats is not None else "reproduced",
    }
    if c.stats is not None:
        s = summary(c.stats)
        detail = s["published_detail"][:1].upper() + s["published_detail"][1:]
        v.update(published=s["published"], published_detail=detail, method=s["method"],
                 published_glyph=_PUBLISHED_GLYPH.get(c.stats.published_support, "–"),
                 power=s["power"].replace("(has 0)", "(has 0 under the published protocol)"))
        if c.stat_verdict != NO_VERDICT:
            v.update(intervals=s["intervals"], p_holm=s["p_holm"], count_probability=s["count_probability"])
    if c.smoke_stats is not None and c.table is not None:
        s = summary(c.smoke_stats)
        v.update(smoke=f"smoke runs ({_smoke_data(c.table)}), not evidence", intervals=s["intervals"],
                 p_holm=s["p_holm"])
    return v


def _smoke_data(t: TableReport) -> str:
    """The smoke runs' data set and main difference, for a heading tag: ``digits · epochs 1``."""
    runs = t.smoke_runs
    data = ", ".join(sorted({data_name(r.data) for r in runs}))
    epochs = sorted({d.actual for r in runs for d in r.differences if d.label == "epochs"})
    return data + (f" · {', '.join(epochs)} epoch{'s' if epochs != ['1'] else ''}" if epochs else "")


def _claims_of(report: Report) -> Callable[[TableReport], str]:
    """Per table: its claims by statistical verdict (✓ 1 · ? 2 …), then the count over the means."""
    glyphs = {"supported": "✓", "contradicted": "✗", "inconclusive": "?", NO_VERDICT: "–"}

    def claims_of(t: TableReport) -> str:
        rows = [c for c in report.claims if c.table is t]
        if not rows:
            return "–"
        stat = [c.stat_verdict for c in rows]
        done = [c for c in rows if c.verdict != "not enough data"]
        good = sum(c.verdict == "reproduced" for c in done)
        by = " · ".join(f"{glyphs[v]} {stat.count(v)}" for v in STAT_VERDICTS if stat.count(v))
        return f"{by}; means {good}/{len(done)}"
    return claims_of


def figure_subtitle(t: TableReport) -> str:
    """The data set and settings of a table figure's runs, for its title."""
    pub = t.protocol.title if t.protocol is not None else "no published protocol recorded"
    if t.protocol_runs and not t.smoke_runs:
        return f"Runs under the published protocol: {pub}"
    if t.smoke_runs and not t.protocol_runs:
        return f"Smoke runs, no verdict: {'; '.join(t.smoke_differences)}. Published protocol: {pub}"
    return (f"{len(t.protocol_runs)} runs under the published protocol ({pub}); pale: smoke runs "
            f"({'; '.join(t.smoke_differences)})")


def figure_caption(t: TableReport) -> str:
    return (f"Table {t.id} drawn from the cells below, rows in the table's order: bars/lines = mean ± std "
            f"over seeds; black diamonds / dashed = published (± printed std); vermillion outline or ✗ = "
            f"outside {FLAG_K:g}σ; hatched bar or hollow point = fewer seeds than the table asks for; pale = "
            f"smoke run. {figure_subtitle(t)}.")


def _datasets(report: Report) -> str:
    runs = {r.path: r for t in report.tables for r in t.runs if r.status == "completed"}
    by = Counter((data_name(r.data), r.follows_protocol) for r in runs.values())
    return ", ".join(f"{d} ({n} {'runs under the published protocol' if ok else 'smoke runs'})"
                     for (d, ok), n in sorted(by.items()))


def _stint_text(run: RunInfo) -> str:
    """``2 stints, 1.25 h`` of an interrupted or requeued run (what it has trained so far)."""
    parts = []
    if run.stints:
        parts.append(f"{run.stints} stint{'s' if run.stints != 1 else ''}")
    wall = run.wall_time_s
    if wall is not None:
        parts.append(f"{wall / 3600:.2f} h" if wall >= 360 else f"{wall:.0f} s")
    return ", ".join(parts) or "no wall time recorded"


def _env(markdown: bool = False) -> Any:
    """HTML: autoescaped, block tags trimmed; Markdown: not escaped, newlines kept as written (the
    renderer collapses runs of blank lines)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                             undefined=jinja2.StrictUndefined, trim_blocks=not markdown, lstrip_blocks=True,
                             autoescape=not markdown)
    env.filters.update(md=_md)
    return env


def _context(report: Report, assets: bool) -> dict[str, Any]:
    return {
        "report": report, "ctx": report.context, "summary": report.summary(), "assets": assets,
        "flag_k": f"{FLAG_K:g}", "min_seeds": MIN_SEEDS, "ddof": STD_DDOF, "datasets": _datasets(report),
        "fmt": _fmt, "verdict_class": _verdict_class, "verdict_text": _verdict_text,
        "seed_summary": _seed_summary,
        "run_links": _run_links, "md_links": _md_links, "md_grid": _md_grid, "smoke_data": _smoke_data,
        "claims_of": _claims_of(report), "figure_caption": figure_caption, "hours": lambda h: f"{h:.2f}",
        "claim_view": claim_view, "interval_text": interval_text, "ci_method": CI_METHOD,
        "stint_text": _stint_text,
    }


def render_html(report: Report) -> str:
    return _env().get_template("report.html.j2").render(**_context(report, assets=True))


def render_markdown(report: Report, assets: bool = False) -> str:
    """The report as Markdown; ``assets``: link the figures, CSVs and run copies of :func:`write_report`."""
    text = _env(markdown=True).get_template("report.md.j2").render(**_context(report, assets=assets))
    lines = [ln.rstrip() for ln in text.splitlines()]
    out: list[str] = []
    for ln in lines:  # at most one blank line in a row
        if ln or (out and out[-1]):
            out.append(ln)
    return "\n".join(out).strip() + "\n"


# ----------------------------------------------------------------------------- files beside the page


def figure_cells(t: TableReport) -> Callable[[str, str], Cell]:
    """``get(metric label, experiment label)`` over a table report's cells, for ``figures.plot_table``."""
    from bioreg.results.figures import metric_axis

    rows_are_metrics = metric_axis(t.spec) == "rows"
    by = {}
    for c in t.cells:
        st = c.smoke_stats if c.is_smoke else c.stats
        by[(c.row, c.column)] = Cell(st.mean, st.std, st.n, st.n_expected, c.published_mean, c.published_std,
                                     outside=c.verdict == OUTSIDE, smoke=c.is_smoke)

    def get(metric: str, exp: str) -> Cell:
        return by[(metric, exp) if rows_are_metrics else (exp, metric)]

    return get


def _copy(src: Path, dest: Path, written: set[Path]) -> bool:
    try:
        data = src.read_bytes()
    except OSError:
        return False
    if len(data) > MAX_COPY_BYTES:
        cut = len(data) - MAX_COPY_BYTES
        data = f"[first {cut} bytes cut; the whole file is {src}]\n".encode() + data[cut:]
    written.add(atomic_write_bytes(dest, data))
    return True


def _run_files(run: RunInfo, doc: Mapping[str, Any], base: Path, rel: Path, out: Path,
               written: set[Path]) -> dict[str, str]:
    """Copy one run's record, config, overrides, log and metrics beside the page; their links."""
    links: dict[str, str] = {}
    stem = base / rel.with_suffix("")
    if _copy(Path(run.path), base / rel, written):
        links["record"] = (base / rel).relative_to(out).as_posix()
    if isinstance(doc.get("config"), Mapping):
        p = stem.with_suffix(".config.yaml")
        head = f"# resolved config of {run.name} seed {run.seed} [{run.config_key}], from its run record\n"
        written.add(atomic_write_text(p, head + yaml.safe_dump(dict(doc["config"]), sort_keys=False)))
        links["config"] = p.relative_to(out).as_posix()
    run_dir = Path(str(run.run_dir)) if run.run_dir else None
    if run_dir is not None and run_dir.is_dir():
        logs = sorted(run_dir.glob("*.log"))
        extra = {"overrides": run_dir / ".hydra" / "overrides.yaml", "log": logs[0] if logs else None,
                 "metrics": run_dir / "csv" / "metrics.csv"}
        suffix = {"overrides": ".overrides.yaml", "log": ".log", "metrics": ".metrics.csv"}
        for key, src in extra.items():
            dest = stem.with_name(stem.name + suffix[key])
            if src is not None and src.is_file() and _copy(src, dest, written):
                links[key] = dest.relative_to(out).as_posix()
    return links


def _copy_runs(report: Report, out: Path, written: set[Path]) -> None:
    root = Path(report.context.results_dir) if report.context.results_dir else None
    done: dict[str, dict[str, str]] = {}
    for run in report.all_runs():
        if run.path not in done:
            try:
                rel = Path(run.path).resolve().relative_to(root.resolve()) if root else Path(run.path)
            except ValueError:
                rel = Path(run.name) / run.config_key / Path(run.path).name
            done[run.path] = _run_files(run, report.docs.get(run.path, {}), out / "runs", rel, out, written)
        run.links = done[run.path]


def _table_csv(t: TableReport) -> str:
    seeds = [int(s) for s in t.spec.seeds]
    rows = []
    for c in t.cells:
        row = {"table": t.id, "reading": f"{t.reading.reading}/{t.reading.selected_on}", "row": c.row,
               "column": c.column, "experiment": c.experiment, "metric": c.metric, "mean": c.stats.mean,
               "std": c.stats.std, "n": c.stats.n, "n_expected": c.stats.n_expected, "published": c.published,
               "published_mean": c.published_mean, "published_std": c.published_std, "diff": c.diff,
               "sigma": c.sigma, "verdict": c.verdict, "smoke_mean": c.smoke_stats.mean,
               "smoke_std": c.smoke_stats.std, "smoke_n": c.smoke_stats.n,
               "ci95_low": c.interval.low if c.interval else None,
               "ci95_high": c.interval.high if c.interval else None,
               "published_in_ci95": c.interval.contains_published if c.interval else None}
        row.update({f"seed_{s}": c.values.get(s) for s in seeds})
        row.update({f"smoke_seed_{s}": c.smoke_values.get(s) for s in seeds})
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False, float_format="%.6g")


def _draw(t: TableReport, out: Path, written: set[Path]) -> None:
    t.figure = t.figure_pdf = t.figure_error = None
    if not any(c.stats.n or c.smoke_stats.n for c in t.cells):
        return
    try:
        paths = plot_table(t.spec, figure_cells(t), out / "figures", figure_subtitle(t),
                           formats=("png", "pdf"))
    except Exception as e:  # noqa: BLE001 - one bad figure must not cost the whole page
        t.figure_error = f"{type(e).__name__}: {e}"
        return
    if not paths:
        return
    for p in paths:
        dest = p.with_name(t.anchor + p.suffix)
        p.replace(dest)
        written.add(dest)
    t.figure = f"figures/{t.anchor}.png"
    t.figure_pdf = f"figures/{t.anchor}.pdf"
    t.figure_width = _css_width(out / t.figure)


def _css_width(png: Path) -> int | None:
    """The CSS width (px at 96/in) at which a PNG shows its text at the point size it was drawn with."""
    from PIL import Image

    try:
        with Image.open(png) as im:
            dpi = float((im.info.get("dpi") or (FIGURE_DPI,))[0]) or FIGURE_DPI
            return round(im.size[0] * 96 / dpi)
    except OSError:
        return None


def _source_figures(report: Report, figures_dir: Path | None, out: Path, written: set[Path]) -> None:
    status: dict[str, str] = {}
    if figures_dir is not None and (figures_dir / STATUS_FILE).is_file():
        try:
            status = dict(json.loads((figures_dir / STATUS_FILE).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            status = {}
    report.source_figures = []
    for f in SOURCE_FIGURES:
        png = figures_dir / f"{f.stem}.png" if figures_dir is not None else None
        said = status.get(f.stem)
        built = png is not None and png.is_file() and (said is None or said.startswith(("built", "present")))
        entry = {"stem": f.stem, "caption": f.caption, "path": None, "pdf": None, "width": None,
                 "status": (said or "built") if built else (said or f"needs {f.needs} (`{f.command}`)")}
        if built and _copy(png, out / "figures" / png.name, written):
            entry["path"] = f"figures/{png.name}"
            entry["width"] = _css_width(out / "figures" / png.name)
            pdf = png.with_suffix(".pdf")
            if pdf.is_file() and _copy(pdf, out / "figures" / pdf.name, written):
                entry["pdf"] = f"figures/{pdf.name}"
        report.source_figures.append(entry)


def _prune(out: Path, written: set[Path]) -> None:
    """Remove files of an earlier report from the generated folders (not anything else)."""
    keep = {p.resolve() for p in written}
    for sub in ("runs", "figures", "tables"):
        for p in sorted((out / sub).rglob("*")) if (out / sub).is_dir() else []:
            if p.is_file() and p.resolve() not in keep:
                p.unlink()


def write_report(report: Report, out_dir: str | Path, figures_dir: str | Path | None = None
                 ) -> dict[str, Any]:
    """Write the self-contained report folder (module docstring); returns ``report.summary()`` and the
    paths of ``index.html`` and ``index.md``."""
    out = Path(out_dir)
    written: set[Path] = set()
    _copy_runs(report, out, written)
    for t in report.tables:
        _draw(t, out, written)
        t.csv = f"tables/{t.anchor}.csv"
        written.add(atomic_write_text(out / t.csv, _table_csv(t)))
    _source_figures(report, Path(figures_dir) if figures_dir is not None else None, out, written)
    _prune(out, written)
    paths = {"html": atomic_write_text(out / "index.html", render_html(report)),
             "md": atomic_write_text(out / "index.md", render_markdown(report, assets=True))}
    return {**report.summary(), "paths": paths}


def write_compare(report: Report, path: str | Path) -> Path:
    """``make compare``: the report's Markdown alone (no figures, no run copies)."""
    return atomic_write_text(Path(path), render_markdown(report, assets=False))

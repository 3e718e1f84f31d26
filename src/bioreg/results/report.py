"""The reproduction report as a page: ``results/report/index.html`` (and ``index.md``).

:func:`collect` reduces the records once into everything the page shows — per table the cells
(:func:`~bioreg.results.tables.build_table`), the comparison with the published numbers and the
2σ verdict (:func:`~bioreg.results.compare.compare_table`, the same as ``make compare``), the
claims (:func:`~bioreg.results.compare.evaluate_claim`), and which (experiment, seed) runs are
present — and :func:`summary_counts` the numbers at the top of the page:

* **cells within 2σ** — cells whose reproduced mean lies within 2σ of the published value, out of
  the cells that can be checked (a reproduced value, a published value and some σ: flag ``ok`` or
  ``FLAG``), next to the cells with any data and all cells;
* **claims reproduced** — out of the claims whose cells all have data (``checkable``);
* **seeds present / asked** — distinct (experiment, seed) pairs with a completed record chosen for a
  table, out of all pairs the tables ask for (an experiment shared by two tables counts once);
* what is missing per table and the command that trains it; failed and unreadable records.

:func:`write_report` draws a figure per table with runs (:func:`bioreg.results.figures.plot_table`)
into ``<out>/figures/``, copies the sources' figures found in the figure folder (``make figures``)
beside them, and renders the HTML with jinja2 (tables with pandas' Styler) and the Markdown
version. Every file is written atomically; the page links only files beside it, so the folder can
be copied or zipped as it is. See docs/tables.md.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bioreg.io import atomic_write_bytes, atomic_write_text
from bioreg.results.aggregate import STD_DDOF, Records
from bioreg.results.compare import FLAG_K, Claim, ClaimOutcome, compare_table, evaluate_claim
from bioreg.results.figures import SOURCE_FIGURES, figure_kind, plot_table
from bioreg.results.tables import TableResult, TableSpec, build_table, format_cell, load_paper

__all__ = ["TableSection", "ReportData", "collect", "summary_counts", "fill_command", "render_markdown",
           "render_html", "write_report", "NO_RUNS"]

NO_RUNS = "no runs yet"
TEMPLATE = Path(__file__).parent / "templates" / "report.html.j2"
CHECKED = ("ok", "FLAG")
_CELL_COLOURS = {"ok": "#dff3e4", "FLAG": "#fbdada", "n/a (no std)": "#fff4d6", "no data": "#f2f2f2",
                 "no thesis value": "#ffffff"}


@dataclass
class TableSection:
    spec: TableSpec
    result: TableResult
    paper: pd.DataFrame | None
    comparison: pd.DataFrame
    claims: list[ClaimOutcome]
    present: set[tuple[str, int]]  # (experiment, seed) with a chosen completed record
    figure: str | None = None  # path relative to the page
    figure_error: str | None = None

    @property
    def asked(self) -> set[tuple[str, int]]:
        return {(e, int(s)) for e in self.spec.experiments for s in self.spec.seeds}

    @property
    def has_runs(self) -> bool:
        return bool(self.present)

    def missing(self) -> dict[str, list[int]]:
        """``{experiment: [seeds without a completed record]}``, printed order."""
        out: dict[str, list[int]] = {}
        for e in self.spec.experiments:
            seeds = [int(s) for s in self.spec.seeds if (e, int(s)) not in self.present]
            if seeds:
                out[e] = seeds
        return out

    def cells_lacking(self) -> int:
        """Cells with fewer values than their experiment has runs: a run without the number (e.g. a
        model trained without ``eval=attacks``, or digits' 7 of the 19 corruptions); see the notes."""
        runs: dict[str, int] = {}
        for e, _s in self.present:
            runs[e] = runs.get(e, 0) + 1
        return int(sum(int(n) < runs.get(str(e), 0)
                       for e, n in zip(self.result.cells["experiment"], self.result.cells["n"], strict=True)))

    def counts(self) -> dict[str, int]:
        flags = self.comparison["flag"] if len(self.comparison) else pd.Series([], dtype=str)
        checked = [o for o in self.claims if o.status != "not enough data"]
        return {
            "cells": len(self.result.cells), "with_data": int((self.result.cells["n"] > 0).sum()),
            "checkable": int(flags.isin(CHECKED).sum()), "within": int((flags == "ok").sum()),
            "flagged": int((flags == "FLAG").sum()), "seeds_present": len(self.present),
            "seeds_asked": len(self.asked), "claims": len(self.claims), "claims_checkable": len(checked),
            "claims_reproduced": sum(o.status == "reproduced" for o in checked),
            "lacking": self.cells_lacking(),
        }


@dataclass
class ReportData:
    sections: list[TableSection]
    records: Records
    results_dir: str
    data: str | None = None
    pins: dict[str, str] = field(default_factory=dict)
    generated: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    # (relative path, caption, wide)
    source_figures: list[tuple[str, str, bool]] = field(default_factory=list)
    missing_figures: list[tuple[str, str, str]] = field(default_factory=list)  # (caption, needs, command)
    #: every record of results_dir before the --data filter (which cannot place an unreadable file)
    unfiltered: Records | None = None

    def unreadable(self) -> list[tuple[str, str]]:
        runs = (self.unfiltered if self.unfiltered is not None else self.records).runs
        bad = runs[runs["status"] == "unreadable"]
        return [(str(r["path"]), str(r["error"] or "")) for _, r in bad.iterrows()]

    def failed(self) -> list[tuple[str, int, str, str]]:
        runs = self.records.runs
        bad = runs[runs["status"] == "failed"]
        return [(str(r["name"]), int(r["seed"]), str(r["config_key"]), str(r["error"] or "no error text"))
                for _, r in bad.iterrows()]


def collect(specs: Sequence[TableSpec], records: Records, *, claims: Sequence[Claim] = (),
            pins: Mapping[str, str] | None = None, results_dir: str = "", data: str | None = None,
            paper_dir: Path | None = None, unfiltered: Records | None = None) -> ReportData:
    """Everything the page shows, from the records (no files written). With a ``data`` filter, pass the
    unfiltered records too (``unfiltered``), so that unreadable files are still listed."""
    kw = {"paper_dir": paper_dir} if paper_dir is not None else {}
    sections = []
    for spec in specs:
        res = build_table(spec, records, pins)
        paper = load_paper(spec, **kw)
        outcomes = [evaluate_claim(c, spec, res, paper) for c in claims if c.table == spec.id]
        sections.append(TableSection(spec=spec, result=res, paper=paper, comparison=compare_table(res, paper),
                                     claims=outcomes, present=set(res.selection.chosen)))
    return ReportData(sections=sections, records=records, results_dir=results_dir or str(records.root or ""),
                      data=data, pins=dict(pins or {}), unfiltered=unfiltered)


def summary_counts(data: ReportData) -> dict[str, int]:
    """The numbers of the summary (module docstring); per-table numbers are ``TableSection.counts``."""
    per = [s.counts() for s in data.sections]
    total = {k: sum(c[k] for c in per)
             for k in ("cells", "with_data", "checkable", "within", "flagged", "claims",
                                                 "claims_checkable", "claims_reproduced")}
    asked = set().union(*(s.asked for s in data.sections)) if data.sections else set()
    present = set().union(*(s.present for s in data.sections)) if data.sections else set()
    runs = data.records.runs
    total.update({
        "seeds_asked": len(asked), "seeds_present": len(present & asked),
        "tables": len(data.sections), "tables_with_runs": sum(s.has_runs for s in data.sections),
        "records": len(runs), "records_completed": int((runs["status"] == "completed").sum()) if len(runs)
        else 0,
        "records_failed": int((runs["status"] == "failed").sum()) if len(runs) else 0,
        "records_unreadable": len(data.unreadable()),
    })
    return total


def fill_command(table_id: str, results_dir: str = "", data: str | None = None) -> str:
    """The command that trains a table's missing runs (a sweep skips the runs that already have a record)."""
    cmd = f"make reproduce-table-{table_id}"
    if results_dir and Path(results_dir) != Path("results/runs"):
        cmd += f" RESULTS_DIR={results_dir}"
    if data and data != "cifar10":
        cmd += f' ARGS="data={data}"'
    return cmd


# ----------------------------------------------------------------------------- cells as text


def _fmt(x: Any, f: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(float(x), f)


def _cell_lines(sec: TableSection, row: str, col: str, c: Mapping[str, Any]) -> list[str]:
    f = sec.spec.number_format
    lines = [format_cell(sec.result.stats(row, col), f)]
    if c["thesis"]:
        lines.append(f"paper {c['thesis']}")
    if c["flag"] in CHECKED and c["sigma"]:
        lines.append(f"Δ = {c['diff'] / c['sigma']:+.1f}σ")
    elif c["flag"] == "n/a (no std)":
        lines.append("no σ (1 seed, no printed std)")
    return lines


def _grids(sec: TableSection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(text grid, flag grid) in printed layout."""
    rows, cols = [r.label for r in sec.spec.rows], [c.label for c in sec.spec.columns]
    text = pd.DataFrame("", index=rows, columns=cols, dtype=object)
    flags = pd.DataFrame("", index=rows, columns=cols, dtype=object)
    for _, c in sec.comparison.iterrows():
        text.loc[c["row"], c["column"]] = "\n".join(_cell_lines(sec, c["row"], c["column"], c))
        flags.loc[c["row"], c["column"]] = c["flag"]
    return text, flags


def _styler_html(sec: TableSection) -> str:
    text, flags = _grids(sec)
    styler = text.style.format(escape="html").format_index(escape="html", axis=0).format_index(escape="html",
                                                                                               axis=1)
    styler = styler.apply(
        lambda _: flags.map(lambda f: f"background-color: {_CELL_COLOURS.get(f, '#ffffff')}"),
        axis=None)
    styler = styler.set_table_attributes('class="cells"').set_uuid(sec.spec.stem.replace("_", ""))
    return styler.to_html()


def _claim_status(o: ClaimOutcome) -> str:
    s = o.status + (" (partial seeds)" if o.partial else "")
    if o.missing:
        s += f" — {len(o.missing)} cell(s) empty"
    return s


def _md(s: Any) -> str:
    return str(s).replace("|", r"\|").replace("\n", "<br>")


# ----------------------------------------------------------------------------- rendering


def _context(data: ReportData) -> dict[str, Any]:
    tot = summary_counts(data)
    tables = []
    for sec in data.sections:
        c = sec.counts()
        miss = sec.missing()
        tables.append({
            "id": sec.spec.id, "anchor": sec.spec.stem, "title": sec.spec.title, "source": sec.spec.source,
            "description": sec.spec.description, "counts": c, "has_runs": sec.has_runs,
            "has_paper": sec.paper is not None, "figure": sec.figure, "figure_error": sec.figure_error,
            "kind": figure_kind(sec.spec), "grid_html": _styler_html(sec) if sec.has_runs else "",
            "claims": [{"id": o.claim.id, "text": o.claim.text, "source": o.claim.source,
                        "check": f"{o.claim.check} {o.claim.op} {o.claim.claimed}/{o.total}",
                        "thesis": "" if o.thesis_count is None else o.thesis_count,
                        "repro": "" if o.repro_count is None else o.repro_count, "status": o.status,
                        "status_text": _claim_status(o)} for o in sec.claims],
            "notes": sec.result.notes, "command": fill_command(sec.spec.id, data.results_dir, data.data),
            "missing": [(e, ", ".join(map(str, s))) for e, s in miss.items()],
            "n_missing": sum(len(s) for s in miss.values()), "seeds": ", ".join(map(str, sec.spec.seeds)),
        })
    return {"data": data, "tot": tot, "tables": tables, "unreadable": data.unreadable(),
            "failed": data.failed(),
            "flag_k": f"{FLAG_K:g}", "ddof": STD_DDOF, "source_figures": data.source_figures,
            "missing_figures": data.missing_figures,
            "partial": [t for t in tables if t["n_missing"] and t["has_runs"]],
            "no_runs": [t for t in tables if not t["has_runs"]],
            "no_runs_command": fill_command("<id>", data.results_dir, data.data),
            "lacking": [t for t in tables if t["counts"]["lacking"]]}


def render_html(data: ReportData) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    tpl = env.from_string(TEMPLATE.read_text(encoding="utf-8"))
    return tpl.render(**_context(data))


def render_markdown(data: ReportData) -> str:
    ctx = _context(data)
    t = ctx["tot"]
    L = ["# Reproduction report", "",
         f"Generated {data.generated} from `{data.results_dir}`"
         + (f" (data: {data.data})" if data.data else "") + f": {t['records']} records, "
         f"{t['records_completed']} completed. Regenerate: `make report`.", "",
         "## Summary", "",
         f"- **Cells within {ctx['flag_k']}σ of the published value: {t['within']} / {t['checkable']}** "
         f"checkable ({t['with_data']} of {t['cells']} cells have data; {t['flagged']} flagged).",
         f"- **Claims reproduced: {t['claims_reproduced']} / {t['claims_checkable']}** checkable "
         f"({t['claims']} claims in all).",
         f"- **Seeds present: {t['seeds_present']} / {t['seeds_asked']}** (experiment, seed) runs asked for "
         f"by the tables; {t['tables_with_runs']} of {t['tables']} tables have runs.",
         f"- Records: {t['records_failed']} failed, {t['records_unreadable']} unreadable.", "",
         "| table | title | seeds | cells with data | within 2σ / checkable | claims | fill with |",
         "|---|---|--:|--:|--:|--:|---|"]
    for tb in ctx["tables"]:
        c = tb["counts"]
        L.append(
            f"| [{tb['id']}](#{tb['anchor']}) | {_md(tb['title'])} | {c['seeds_present']}/{c['seeds_asked']} "
            f"| {c['with_data']}/{c['cells']} | {c['within']}/{c['checkable']} "
            f"| {c['claims_reproduced']}/{c['claims_checkable']} "
            f"| {'' if not tb['n_missing'] else '`' + tb['command'] + '`'} |")
    if ctx["partial"] or ctx["no_runs"] or ctx["lacking"]:
        L += ["", "### What is missing", ""]
        for tb in ctx["partial"]:
            what = "; ".join(f"{e} seeds {s}" for e, s in tb["missing"])
            L.append(
                f"- Table {tb['id']}: {tb['n_missing']} run(s) missing ({_md(what)}) — `{tb['command']}`")
        if ctx["no_runs"]:
            L.append(
                f"- {NO_RUNS}: tables {', '.join(t['id'] for t in ctx['no_runs'])} — "
                f"`{ctx['no_runs_command']}`")
        for tb in ctx["lacking"]:
            L.append(
                f"- Table {tb['id']}: {tb['counts']['lacking']} cell(s) lack a number that some of their "
                "runs do not record (see the table's notes)")
    if ctx["unreadable"]:
        L += ["", "### Unreadable records", ""] + [f"- `{p}`: {_md(e)}" for p, e in ctx["unreadable"]]
    if ctx["failed"]:
        L += ["", "### Failed runs", ""] + [f"- {n} seed {s} [{k}]: {_md(e)}" for n, s, k, e in ctx["failed"]]
    for sec, tb in zip(data.sections, ctx["tables"], strict=True):
        L += ["", f"<a id=\"{tb['anchor']}\"></a>", "", f"## Table {tb['id']}: {_md(tb['title'])}", "",
              f"Source: {_md(tb['source'])}."]
        if tb["description"]:
            L += ["", _md(tb["description"])]
        if not tb["has_runs"]:
            L += ["", f"**{NO_RUNS}** — `{tb['command']}`"]
            continue
        c = tb["counts"]
        L += ["",
              f"Seeds {c['seeds_present']}/{c['seeds_asked']}; cells with data "
              f"{c['with_data']}/{c['cells']}; within 2σ {c['within']}/{c['checkable']}."]
        if tb["n_missing"]:
            L += ["", f"Missing: {tb['n_missing']} run(s) — `{tb['command']}`"]
        if tb["figure"]:
            L += ["", f"![Table {tb['id']}]({tb['figure']})"]
        text, flags = _grids(sec)
        mark = {"ok": " ✓", "FLAG": " **✗ >2σ**"}
        L += ["", "| | " + " | ".join(_md(c) for c in text.columns) + " |",
              "|---|" + "--:|" * len(text.columns)]
        for r in text.index:
            L.append(f"| {_md(r)} | " + " | ".join(_md(text.loc[r, c]) + mark.get(flags.loc[r, c], "")
                                                   for c in text.columns) + " |")
        if tb["claims"]:
            L += ["", "| claim | statement | check | paper | reproduced | status |",
                  "|---|---|---|--:|--:|---|"]
            L += [
                f"| {cl['id']} | {_md(cl['text'])} ({_md(cl['source'])}) | {cl['check']} | {cl['thesis']} | "
                f"{cl['repro']} | {cl['status_text']} |" for cl in tb["claims"]]
        if tb["notes"]:
            L += ["", "Notes:"] + [f"- {_md(n)}" for n in tb["notes"]]
    L += ["", "## Figures of the sources", ""]
    for path, cap, _wide in ctx["source_figures"]:
        L += [f"![{_md(cap)}]({path})", "", f"*{_md(cap)}*", ""]
    for cap, needs, cmd in ctx["missing_figures"]:
        L.append(f"- not built: {_md(cap)} — needs {_md(needs)} (`{cmd}`)")
    return "\n".join(L) + "\n"


def write_report(data: ReportData, out_dir: str | Path,
                 figures_dir: str | Path | None = None) -> dict[str, Any]:
    """Draw the table figures, copy the source figures, write ``index.html`` and ``index.md`` under
    ``out_dir``. Returns :func:`summary_counts` plus the paths written."""
    out = Path(out_dir)
    figs = out / "figures"
    for sec in data.sections:
        sec.figure = sec.figure_error = None
        if not sec.counts()["with_data"]:
            continue
        try:
            paths = plot_table(sec.result, sec.comparison, figs)
        except Exception as e:  # noqa: BLE001 - one bad figure must not cost the whole page
            sec.figure_error = f"{type(e).__name__}: {e}"
            continue
        if paths:
            sec.figure = paths[0].relative_to(out).as_posix()
    data.source_figures, data.missing_figures = [], []
    src = Path(figures_dir) if figures_dir is not None else None
    known = set()
    for f in SOURCE_FIGURES:
        known.add(f.stem)
        p = src / f"{f.stem}.png" if src is not None else None
        if p is not None and p.is_file():
            rel, wide = _copy(p, figs)
            data.source_figures.append((rel, f.caption, wide))
        else:
            data.missing_figures.append((f.caption, f.needs, f.command))
    if src is not None and src.is_dir():  # figures other parts add later (fig_3_2.png, ...): shown by name
        for p in sorted(src.glob("fig_*.png")):
            if p.stem not in known:
                rel, wide = _copy(p, figs)
                data.source_figures.append((rel, p.stem.replace("_", " "), wide))
    written = {"html": atomic_write_text(out / "index.html", render_html(data)),
               "md": atomic_write_text(out / "index.md", render_markdown(data))}
    return {**summary_counts(data), "paths": written}


def _copy(p: Path, figs: Path) -> tuple[str, bool]:
    """Copy a figure beside the page: (its path relative to the page, whether it is wide)."""
    import matplotlib.image

    figs.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(figs / p.name, p.read_bytes())
    try:
        h, w = matplotlib.image.imread(p).shape[:2]
    except Exception:  # noqa: BLE001 - an unreadable PNG is still linked, at the default width
        h, w = 1, 1
    return f"figures/{p.name}", w > 2.2 * h

"""The reproduction report as one object: computed once from the records, rendered twice.

:func:`build_report` reduces the records into a :class:`Report`; ``bioreg.results.report_page``
renders it as Markdown (``make compare`` → ``results/REPORT.md``, and ``index.md`` of the page)
and as HTML (``make report`` → ``results/report/index.html``) from the Jinja2 templates in
``templates/``. Nothing here writes a file.

* **Protocol match.** Every record of a table's experiments is compared with the table's
  published protocol (:mod:`bioreg.results.protocol`). A cell is built twice: from the runs that
  follow the protocol (its value, its verdict) and from the *smoke runs* that do not (shown,
  greyed, labelled with what differs; never a verdict, never counted in the summary). Runs under
  another reading (``record["protocol"]``, issue 17: the authors' protocol, model selected on the
  test set) get a section of their own beside the thesis's reading, never one cell with it.
* **Cells** (:class:`CellReport`) keep their per-seed values keyed by seed, with the run behind
  each (:class:`~bioreg.results.provenance.RunInfo`), the published value and the verdict of
  :func:`bioreg.results.compare.cell_verdict` (≥ ``MIN_SEEDS`` seeds, σ from the seeds' spread).
* **Claims** (:class:`ClaimRow`) are judged on the published-protocol cells of the thesis's reading,
  twice: the statistical verdict (``ClaimRow.stats``, a :class:`~bioreg.results.claim_stats.
  ClaimJudgement`: supported / contradicted / inconclusive from the per-seed values, with the
  published support and the seeds needed) and the count over the means (``ClaimRow.verdict``:
  reproduced / not reproduced; not enough data when a cell has fewer than ``MIN_SEEDS`` seeds).
  Smoke runs never feed either; a claim that only smoke runs fill gets ``smoke_stats`` (the same
  statistics on the smoke runs, shown as such, never a verdict).
* **Cells** also carry the 95 % t-interval of their mean and whether the published value lies
  in it (``CellReport.interval``, :func:`bioreg.results.claim_stats.cell_interval`).
* **Readings** (:class:`ReadingRow`): each ablation row/column against its printed counterpart,
  and each other protocol reading against the thesis's.
* **Traceability**: per table the provenance of its runs (commits, versions, devices, GPU/CPU
  hours) and the command that fills its missing runs with the settings of the runs present;
  for the whole folder the failed runs with their reason, the runs stopped by a signal that resume
  when relaunched (``requeued`` / ``interrupted``: never failures), the unreadable files and every
  file that is not a record.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bioreg.results.aggregate import CellStats, Records, cell_stats
from bioreg.results.claim_stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    CellInterval,
    ClaimJudgement,
    PublishedRuns,
    StatsOptions,
    cell_interval,
    judge_claim,
    load_published_runs,
    published_cells,
)
from bioreg.results.compare import (
    GLYPHS,
    MIN_SEEDS,
    NO_DATA,
    OUTSIDE,
    WITHIN,
    Claim,
    ClaimOutcome,
    ablation_summary,
    compare_table,
    evaluate_claim,
    format_z,
)
from bioreg.results.protocol import DEFAULT_READING, Protocol, Reading, common_differences, get_protocol
from bioreg.results.provenance import (
    FillCommand,
    Provenance,
    RunInfo,
    fill_command,
    make_command,
    provenance,
    run_info,
)
from bioreg.results.records import INCOMPLETE, UNREADABLE
from bioreg.results.tables import TableResult, TableSpec, build_table, format_cell, load_paper

__all__ = ["CellReport", "TableReport", "ClaimRow", "ReadingRow", "OtherFile", "ReportContext", "Report",
           "build_report", "build_table_report", "table_runs", "SMOKE", "other_files", "judge_claims",
           "NO_VERDICT", "STAT_VERDICTS", "STAT_GLYPHS"]

#: the verdict of a cell that only smoke runs fill
SMOKE = "smoke run"
#: a claim's statistical verdict when no run under the published protocol fills any of its cells
NO_VERDICT = "no verdict"
#: the statistical verdicts of a claim, in the order the summary counts them
STAT_VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NO_VERDICT)
#: their glyphs (shown beside the word and the colour): cannot tell is "?"
STAT_GLYPHS = {SUPPORTED: "✓", CONTRADICTED: "✗", INCONCLUSIVE: "?", NO_VERDICT: "–"}


@dataclass
class CellReport:
    """One cell of a table: per-seed values of its published-protocol runs and of its smoke runs."""

    row: str
    column: str
    experiment: str
    metric: str
    values: dict[int, float]  # seed -> value, runs that follow the published protocol
    smoke_values: dict[int, float]  # seed -> value, smoke runs
    stats: CellStats
    smoke_stats: CellStats
    published: str = ""  # the printed text ("83.6 ± 0.7"; "(UG)" appended for an ablation)
    published_mean: float | None = None
    published_std: float | None = None
    diff: float | None = None
    sigma: float | None = None
    verdict: str = NO_DATA  # compare.VERDICTS, or SMOKE
    runs: dict[int, RunInfo] = field(default_factory=dict)
    smoke_runs: dict[int, RunInfo] = field(default_factory=dict)
    anchor: str = ""
    #: 95 % t-interval of the mean of ``values`` and whether ``published_mean`` lies in it
    interval: CellInterval | None = None

    @property
    def glyph(self) -> str:
        return GLYPHS.get(self.verdict, "–")

    @property
    def z_text(self) -> str:
        return format_z(self.diff, self.sigma)

    @property
    def is_smoke(self) -> bool:
        return self.verdict == SMOKE

    @property
    def has_verdict(self) -> bool:
        return self.verdict in (WITHIN, OUTSIDE)

    def text(self, number_format: str) -> str:
        """``81.2 ± 0.3 (3/5)`` of the cell's shown runs (the smoke runs' when only they fill it)."""
        return format_cell(self.smoke_stats if self.is_smoke else self.stats, number_format)


@dataclass
class TableReport:
    """One table under one reading: its cells, runs, provenance, missing runs and fill command."""

    spec: TableSpec
    protocol: Protocol | None
    reading: Reading
    result: TableResult  # cells from the runs that follow the published protocol
    smoke: TableResult  # cells from the smoke runs
    paper: pd.DataFrame | None
    comparison: pd.DataFrame  # compare.compare_table of ``result``
    cells: list[CellReport]
    runs: list[RunInfo]  # every record file of its experiments under this reading (failed ones too)
    provenance: Provenance
    fill: FillCommand
    #: the published protocol's command, when the runs present are smoke runs
    fill_protocol: FillCommand | None = None
    figure: str | None = None  # set by the page writer: PNG relative to the page
    figure_pdf: str | None = None
    figure_width: int | None = None  # CSS px at which the PNG shows its fonts at their size
    figure_error: str | None = None
    csv: str | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def anchor(self) -> str:
        r = self.reading
        return self.spec.stem + ("" if r.is_default else f"-{r.reading}-{r.selected_on}")

    def cell(self, row: str, column: str) -> CellReport:
        return next(c for c in self.cells if (c.row, c.column) == (row, column))

    def grid(self) -> list[tuple[str, list[CellReport]]]:
        """The cells in printed layout: ``[(row label, [cell per column])]``."""
        return [(r.label, [self.cell(r.label, c.label) for c in self.spec.columns]) for r in self.spec.rows]

    @property
    def protocol_runs(self) -> list[RunInfo]:
        return [r for r in self.runs if r.status == "completed" and r.follows_protocol]

    @property
    def smoke_runs(self) -> list[RunInfo]:
        return [r for r in self.runs if r.status == "completed" and not r.follows_protocol]

    @property
    def present(self) -> set[tuple[str, int]]:
        return set(self.result.selection.chosen)

    def missing(self) -> dict[str, list[int]]:
        """``{experiment: [seeds without a published-protocol run]}``, printed order."""
        out: dict[str, list[int]] = {}
        for e in self.spec.experiments:
            seeds = [int(s) for s in self.spec.seeds if (e, int(s)) not in self.present]
            if seeds:
                out[e] = seeds
        return out

    @property
    def smoke_differences(self) -> list[str]:
        """What the smoke runs of this table do differently, as text (shared ones once)."""
        return common_differences([r.differences for r in self.smoke_runs])

    @property
    def notes(self) -> list[str]:
        return self.result.notes + [f"smoke runs: {n}" for n in self.smoke.notes]

    def counts(self) -> dict[str, int]:
        v = [c.verdict for c in self.cells]
        return {
            "cells": len(v), "with_data": sum(c.stats.n > 0 for c in self.cells),
            "within": v.count(WITHIN), "outside": v.count(OUTSIDE),
            "no_verdict": sum(c.stats.n > 0 and not c.has_verdict for c in self.cells),
            "smoke_cells": v.count(SMOKE), "seeds_present": len(self.present),
            "seeds_asked": len(self.spec.experiments) * len(self.spec.seeds),
            "runs": len(self.protocol_runs), "smoke_runs": len(self.smoke_runs),
            "failed": sum(r.status == "failed" for r in self.runs),
            "incomplete": sum(r.status in INCOMPLETE for r in self.runs),
        }

    def runs_text(self) -> str:
        """Which runs fill the table, in words, for its heading and its figure's title."""
        n, s = len(self.protocol_runs), len(self.smoke_runs)
        parts = []
        if n:
            parts.append(f"{n} run{'s' if n != 1 else ''} under the published protocol")
        if s:
            diff = "; ".join(self.smoke_differences) or "settings differ"
            parts.append(f"{s} smoke run{'s' if s != 1 else ''}: {diff} — no verdict")
        return "; ".join(parts) or "no runs yet"


@dataclass
class ClaimRow:
    """A claim of a thesis checked on one table (published-protocol runs, the thesis's reading).

    Two answers: ``stats`` — the claim statistics (:func:`bioreg.results.claim_stats.judge_claim` on
    ``values()`` and the printed cells: supported / contradicted / inconclusive, intervals, Holm
    p-values, published support, seeds needed), whose verdict is ``stat_verdict``; and ``verdict`` —
    the count over the means (reproduced / not reproduced / not enough data). ``smoke_stats``: the
    same statistics on the smoke runs, only for a claim that no published-protocol run fills (shown
    as smoke information, never a verdict).
    """

    claim: Claim
    outcome: ClaimOutcome
    table: TableReport | None
    verdict: str  # reproduced | not reproduced | not enough data
    reason: str = ""
    stats: ClaimJudgement | None = None
    smoke_stats: ClaimJudgement | None = None

    @property
    def cells(self) -> list[tuple[str, str]]:
        return list(self.outcome.cells)

    def values(self) -> dict[tuple[str, str], dict[int, float]]:
        if self.table is None:
            return {}
        return {(r, c): dict(self.table.cell(r, c).values) for r, c in self.cells}

    def smoke_values(self) -> dict[tuple[str, str], dict[int, float]]:
        if self.table is None:
            return {}
        return {(r, c): dict(self.table.cell(r, c).smoke_values) for r, c in self.cells}

    @property
    def glyph(self) -> str:
        return {"reproduced": "✓", "not reproduced": "✗"}.get(self.verdict, "–")

    @property
    def stat_verdict(self) -> str:
        """supported | contradicted | inconclusive | no verdict (no published-protocol run in its cells)."""
        if self.stats is None or self.stats.verdict not in (SUPPORTED, CONTRADICTED, INCONCLUSIVE):
            return NO_VERDICT
        return self.stats.verdict

    @property
    def stat_glyph(self) -> str:
        return STAT_GLYPHS[self.stat_verdict]

    @property
    def stat_reason(self) -> str:
        """Why the statistical verdict is what it is, in words."""
        if self.stat_verdict != NO_VERDICT:
            why = self.stats.reason if self.stats is not None else ""
            smoke = [k for k, v in self.smoke_values().items() if v and not self.values().get(k)]
            return why + (f" ({len(smoke)} with only smoke runs, never counted)" if smoke else "")
        if self.table is None:
            return "its table is not in this report"
        if self.smoke_stats is not None:
            return "smoke runs only: they never give a verdict"
        return "no run under the published protocol in its cells"

    @property
    def seeds_run(self) -> int:
        """The most seeds any of its cells has under the published protocol."""
        return max((len(v) for v in self.values().values()), default=0)


@dataclass
class ReadingRow:
    """An ablation (or another protocol reading) against the printed reading it re-reads."""

    table: str
    anchor: str
    printed: str
    alternative: str
    kind: str  # ablation | protocol
    cells: int
    paired: int
    mean_abs_diff_printed: float | None
    mean_abs_diff_alternative: float | None
    outside_printed: int
    outside_alternative: int
    closer: str
    number_format: str = ".2f"


@dataclass(frozen=True)
class OtherFile:
    """A file in the results folder that is not a run record."""

    path: str  # relative to the results folder
    size: int
    beside_records: bool  # in a record's folder (e.g. a moved-aside damaged record, analysis bins)


@dataclass
class ReportContext:
    results_dir: str
    data: str | None = None
    pins: dict[str, str] = field(default_factory=dict)
    generated: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    records: int = 0
    completed: int = 0

    def command(self, target: str) -> str:
        """``make report RESULTS_DIR=… DATA=… PINS=…`` as this report was made."""
        v = {}
        if self.results_dir and Path(self.results_dir) != Path("results/runs"):
            v["RESULTS_DIR"] = self.results_dir
        if self.data:
            v["DATA"] = self.data
        if self.pins:
            v["PINS"] = " ".join(f"{k}={p}" for k, p in self.pins.items())
        return make_command(target, v)


@dataclass
class Report:
    tables: list[TableReport]
    claims: list[ClaimRow]
    readings: list[ReadingRow]
    failed: list[RunInfo]
    unreadable: list[RunInfo]
    other_files: list[OtherFile]
    context: ReportContext
    #: runs stopped by a signal that resume from their last.ckpt when relaunched (``records.INCOMPLETE``)
    incomplete: list[RunInfo] = field(default_factory=list)
    #: the sources' figures ``{stem, caption, status, path, pdf, width}`` (path None: not built); set by
    #: the page writer
    source_figures: list[dict[str, Any]] = field(default_factory=list)
    #: the record documents by file path (the page writer copies them beside the page)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def all_runs(self) -> list[RunInfo]:
        """Every run the report shows: the tables' runs, the failed, incomplete and unreadable ones."""
        return [r for t in self.tables for r in t.runs] + self.failed + self.incomplete + self.unreadable

    def summary(self) -> dict[str, int]:
        """The counts at the top of the page (smoke cells never count as checked)."""
        per = [t.counts() for t in self.tables]
        tot = {k: sum(c[k] for c in per) for k in ("cells", "with_data", "within", "outside", "no_verdict",
                                                   "smoke_cells", "runs", "smoke_runs")}
        main = [t for t in self.tables if t.reading.is_default]
        asked = {(e, int(s)) for t in main for e in t.spec.experiments for s in t.spec.seeds}
        present = set().union(*(t.present for t in main)) if main else set()
        verdicts = [c.verdict for c in self.claims]
        stat = [c.stat_verdict for c in self.claims]
        tot.update({
            "checked": tot["within"] + tot["outside"], "seeds_asked": len(asked),
            "seeds_present": len(present & asked), "tables": len(main),
            "tables_with_runs": sum(bool(t.protocol_runs) for t in main),
            "tables_smoke_only": sum(bool(t.smoke_runs) and not t.protocol_runs for t in main),
            "claims": len(self.claims), "claims_checked": sum(v != "not enough data" for v in verdicts),
            "claims_reproduced": verdicts.count("reproduced"),
            **{f"claims_{v.replace(' ', '_')}": stat.count(v) for v in STAT_VERDICTS},
            "records": self.context.records,
            "records_completed": self.context.completed, "records_failed": len(self.failed),
            "records_incomplete": len(self.incomplete),
            "records_unreadable": len(self.unreadable), "other_files": len(self.other_files),
        })
        return tot


# ----------------------------------------------------------------------------- building


def _num(x: Any) -> float | None:
    return None if x is None or pd.isna(x) else float(x)


def _cell_runs(spec: TableSpec, res: TableResult, exp: str, index: Mapping[tuple[str, str, int], RunInfo],
               values: Mapping[int, float]) -> dict[int, RunInfo]:
    """The run behind each seed's value of a cell (a run without the cell's number is in the notes)."""
    out = {}
    for s in spec.seeds:
        if int(s) not in values:
            continue
        key = res.selection.chosen.get((exp, int(s)))
        if key is not None and (exp, key, int(s)) in index:
            out[int(s)] = index[(exp, key, int(s))]
    return out


def _cells(t_spec: TableSpec, res: TableResult, smoke: TableResult, comparison: pd.DataFrame,
           index: Mapping[tuple[str, str, int], RunInfo], anchor: str) -> list[CellReport]:
    cmp_ = {(r["row"], r["column"]): r for _, r in comparison.iterrows()}
    out = []
    for i, r in enumerate(t_spec.rows):
        for j, c in enumerate(t_spec.columns):
            exp, metric = t_spec.cell(r, c)
            k = cmp_[(r.label, c.label)]
            vals, svals = res.values(r.label, c.label), smoke.values(r.label, c.label)
            pm = None if pd.isna(k["thesis_mean"]) else float(k["thesis_mean"])
            ps = None if pd.isna(k["thesis_std"]) else float(k["thesis_std"])
            verdict = k["verdict"] if vals or not svals else SMOKE
            cell = CellReport(
                row=r.label, column=c.label, experiment=exp, metric=str(metric), values=vals,
                smoke_values=svals,
                stats=cell_stats(vals, len(t_spec.seeds)), smoke_stats=cell_stats(svals, len(t_spec.seeds)),
                published=str(k["thesis"]), published_mean=pm, published_std=ps,
                diff=None if verdict == SMOKE else _num(k["diff"]), sigma=_num(k["sigma"]), verdict=verdict,
                runs=_cell_runs(t_spec, res, exp, index, vals),
                smoke_runs=_cell_runs(t_spec, smoke, exp, index, svals),
                anchor=f"{anchor}-r{i}-c{j}", interval=cell_interval(vals, pm))
            out.append(cell)
    return out


def table_runs(spec: TableSpec, records: Records, protocol: Protocol | None) -> list[RunInfo]:
    """Every record file of the table's experiments, matched against its published protocol."""
    wanted = set(spec.experiments)
    runs = records.runs[records.runs["name"].isin(wanted)]
    return [run_info(p, records.docs.get(str(p), {"status": st, "error": err}), protocol)
            for p, st, err in zip(runs["path"], runs["status"], runs["error"], strict=True)]


def build_table_report(spec: TableSpec, records: Records, runs: Sequence[RunInfo], reading: Reading, *,
                       pins: Mapping[str, str] | None = None, paper: pd.DataFrame | None = None,
                       protocol: Protocol | None = None, results_dir: str = "") -> TableReport:
    """One table under one reading, from the ``runs`` of its experiments (see the module docstring)."""
    mine = [r for r in runs if r.reading == reading or (r.status == UNREADABLE and reading.is_default)]
    follow = [r.path for r in mine if r.follows_protocol]
    res = build_table(spec, records.subset(follow), pins)
    smoke = build_table(spec, records.subset(r.path for r in mine if not r.follows_protocol), pins)
    comparison = compare_table(res, paper)
    index = {(r.name, r.config_key, r.seed): r for r in mine}
    t = TableReport(spec=spec, protocol=protocol, reading=reading, result=res, smoke=smoke, paper=paper,
                    comparison=comparison, cells=[], runs=mine, provenance=provenance(mine),
                    fill=FillCommand("", ""))
    t.cells = _cells(spec, res, smoke, comparison, index, t.anchor)
    present = t.protocol_runs or t.smoke_runs
    t.fill = fill_command(spec.id, present, t.missing(), spec.experiments, results_dir)
    if not t.protocol_runs and t.smoke_runs:
        t.fill_protocol = fill_command(spec.id, [], t.missing(), spec.experiments, results_dir)
    return t


def _claim_row(claim: Claim, table: TableReport | None) -> ClaimRow:
    if table is None:
        return ClaimRow(claim, ClaimOutcome(claim, None, None, 0, "not enough data"), None, "not enough data",
                        "its table is not in this report")
    o = evaluate_claim(claim, table.spec, table.result, table.paper)
    if o.status == "not enough data":
        smoke = [c for c in o.cells if table.cell(*c).is_smoke]
        why = (f"{len(set(o.missing))} of its {len(o.cells)} cells have no run under the published protocol"
               + (f" ({len(smoke)} only smoke runs)" if smoke else ""))
        return ClaimRow(claim, o, table, "not enough data", why)
    few = [c for c in o.cells if table.cell(*c).stats.n < MIN_SEEDS]
    if few:
        return ClaimRow(claim, o, table, "not enough data",
                        f"{len(few)} of its {len(o.cells)} cells have fewer than {MIN_SEEDS} seeds")
    why = "some cells have fewer seeds than the table asks" if o.partial else ""
    return ClaimRow(claim, o, table, o.status, why)


def _published_runs(table_id: str, runs: Mapping[str, PublishedRuns]) -> PublishedRuns:
    """The table's run count, or — for a table without an entry in ``published_runs.yaml`` — one run
    without a std: its printed numbers are then untestable, never tested on a guessed count."""
    why = "no entry in published_runs.yaml: the printed numbers are not tested"
    return runs.get(str(table_id)) or PublishedRuns(str(table_id), 1, False, "none", why)


def judge_claims(rows: Sequence[ClaimRow], options: StatsOptions | None = None,
                 published_runs: Mapping[str, PublishedRuns] | None = None) -> None:
    """Fill ``stats`` of every claim row from its cells' published-protocol values (``CellReport.values``:
    never a smoke run) and the printed cells, and ``smoke_stats`` of a claim that only smoke runs fill.
    The claims of one table share one cache per kind of run, so a comparison that several claims make
    is computed once."""
    runs = load_published_runs() if published_runs is None else published_runs
    by_table: dict[str, list[ClaimRow]] = {}
    for row in rows:
        if row.table is not None:
            by_table.setdefault(row.table.anchor, []).append(row)
    for group in by_table.values():
        t = group[0].table
        assert t is not None
        pub = published_cells(t.spec, t.paper, _published_runs(t.spec.id, runs))
        cache: dict = {}
        smoke_cache: dict = {}
        for row in group:
            row.stats = judge_claim(row.claim, t.spec, row.values(), pub, options, cache)
            smoke = row.smoke_values()
            if not any(row.values().values()) and any(smoke.values()):
                row.smoke_stats = judge_claim(row.claim, t.spec, smoke, pub, options, smoke_cache)


def _ablation_rows(t: TableReport) -> list[ReadingRow]:
    return [ReadingRow(table=t.id, anchor=t.anchor, printed=a["printed"], alternative=a["ablation"],
                       kind="ablation", cells=a["cells"], paired=a["paired"],
                       mean_abs_diff_printed=a["mean_abs_diff_printed"],
                       mean_abs_diff_alternative=a["mean_abs_diff_ablation"],
                       outside_printed=a["flagged_printed"], outside_alternative=a["flagged_ablation"],
                       closer=a["closer"], number_format=t.spec.number_format)
            for a in ablation_summary(t.spec, t.comparison)]


def _protocol_row(main: TableReport, other: TableReport) -> ReadingRow:
    a = {(c.row, c.column): c for c in main.cells if c.diff is not None and c.stats.n}
    b = {(c.row, c.column): c for c in other.cells if c.diff is not None and c.stats.n}
    both = [k for k in a if k in b]
    da = sum(abs(a[k].diff) for k in both) / len(both) if both else None  # type: ignore[arg-type]
    db = sum(abs(b[k].diff) for k in both) / len(both) if both else None  # type: ignore[arg-type]
    first, second = main.reading.label, other.reading.label
    if not both:
        closer = ""
    else:
        closer = "tie" if da == db else (first if da < db else second)  # type: ignore[operator]
    return ReadingRow(table=main.id, anchor=other.anchor, printed=first, alternative=second, kind="protocol",
                      cells=len(other.cells), paired=len(both), mean_abs_diff_printed=da,
                      mean_abs_diff_alternative=db,
                      outside_printed=sum(a[k].verdict == OUTSIDE for k in both),
                      outside_alternative=sum(b[k].verdict == OUTSIDE for k in both), closer=closer,
                      number_format=main.spec.number_format)


def other_files(results_dir: str | Path, records: Records) -> list[OtherFile]:
    """Every file under ``results_dir`` that is not read as a run record (``*/*/seed*.json``)."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    known = {Path(p).resolve() for p in records.runs["path"]}
    folders = {p.parent for p in known}
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.resolve() not in known:
            beside = p.resolve().parent in folders
            out.append(OtherFile(p.relative_to(root).as_posix(), p.stat().st_size, beside))
    return out


def _tables(specs: Sequence[TableSpec], records: Records, pins: Mapping[str, str] | None,
            paper_dir: Path | None, results_dir: str) -> list[TableReport]:
    kw = {"paper_dir": paper_dir} if paper_dir is not None else {}
    out = []
    for spec in specs:
        protocol = get_protocol(spec.protocol)
        runs = table_runs(spec, records, protocol)
        readings = sorted({r.reading for r in runs if r.status != UNREADABLE} | {DEFAULT_READING},
                          key=lambda r: (not r.is_default, r))
        paper = load_paper(spec, **kw)
        for reading in readings:
            out.append(build_table_report(spec, records, runs, reading, pins=pins, paper=paper,
                                          protocol=protocol, results_dir=results_dir))
    return out


def build_report(specs: Sequence[TableSpec], records: Records, *, claims: Sequence[Claim] = (),
                 pins: Mapping[str, str] | None = None, results_dir: str = "", data: str | None = None,
                 paper_dir: Path | None = None, unfiltered: Records | None = None,
                 stats_options: StatsOptions | None = None,
                 published_runs: Mapping[str, PublishedRuns] | None = None) -> Report:
    """The whole report from the records (no files written). With a ``data`` filter pass the unfiltered
    records too (``unfiltered``), so that unreadable files are still listed. ``stats_options`` and
    ``published_runs`` (default: ``specs/published_runs.yaml``) go to the claim statistics."""
    results_dir = results_dir or str(records.root or "")
    tables = _tables(specs, records, pins, paper_dir, results_dir)
    main = {t.id: t for t in tables if t.reading.is_default}
    claim_rows = [_claim_row(c, main.get(c.table)) for c in claims if c.table in main]
    judge_claims(claim_rows, stats_options, published_runs)
    readings = [row for t in tables if t.reading.is_default for row in _ablation_rows(t)]
    readings += [_protocol_row(main[t.id], t) for t in tables if not t.reading.is_default]
    every = unfiltered if unfiltered is not None else records
    runs_of = zip(every.runs["path"], every.runs["status"], every.runs["error"], strict=True)
    infos = [run_info(p, every.docs.get(str(p), {"status": st, "error": err}), None)
             for p, st, err in runs_of]
    runs = records.runs
    ctx = ReportContext(results_dir=results_dir, data=data, pins=dict(pins or {}), records=len(every.runs),
                        completed=int((runs["status"] == "completed").sum()) if len(runs) else 0)
    infos = [r for r in infos if r.status == UNREADABLE or data is None or r.data == data]
    return Report(tables=tables, claims=claim_rows, readings=readings,
                  failed=[r for r in infos if r.status == "failed"],
                  incomplete=[r for r in infos if r.status in INCOMPLETE],
                  unreadable=[r for r in infos if r.status == UNREADABLE],
                  other_files=other_files(results_dir, every) if results_dir else [], context=ctx,
                  docs=every.docs)


"""Reproduction vs. publication: cell-by-cell differences, flags, and the theses' qualitative claims.

For every table spec with a paper CSV, :func:`compare_table` joins the reproduced
cells to the printed ones on (row label, column label) and flags a cell when

    |reproduced mean − printed mean| > 2 · σ,   σ = sqrt(s_repro² + s_thesis²)

where ``s_repro`` is the reproduction's sample std over seeds (used when it has at
least two seeds) and ``s_thesis`` the printed std (Dutta prints one per cell; Singh
and the push-pull paper print none). σ is floored at half a unit of the last printed
digit (``75.8`` → 0.05), because several printed stds are ``0.0``. No σ at all (one
seed and no printed std) gives no flag but ``n/a``. This is the spread of *single
runs*, not the standard error of the means: a deliberately loose test that asks
"is our mean outside the run-to-run scatter of both sets of runs?". See
``docs/decisions/pipeline.md``.

Claims (``specs/claims.yaml``) are small declarative checks over one table's means;
each is evaluated on the printed numbers (to show the encoding matches the text)
and on the reproduction: *reproduced*, *not reproduced*, or *not enough data*.
"""

from __future__ import annotations

import datetime as _dt
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bioreg.results.aggregate import STD_DDOF, Records
from bioreg.results.tables import (
    SPEC_DIR,
    TableResult,
    TableSpec,
    build_table,
    format_cell,
    load_paper,
    paper_matrix,
    result_matrix,
)

__all__ = ["FLAG_K", "compare_table", "ablation_summary", "Claim", "load_claims", "evaluate_claim",
           "ClaimOutcome",
           "build_report"]

#: a cell is flagged when |difference| > FLAG_K * sigma
FLAG_K = 2.0
OPS = {">=": operator.ge, "==": operator.eq, "<=": operator.le, ">": operator.gt, "<": operator.lt}
CHECKS = ("count_best", "count_greater", "pairs_greater")


def printed_resolution(text: str) -> float:
    """Half a unit of the last printed digit: ``"75.8"`` → 0.05, ``"100"`` → 0.5, ``"0.0346"`` → 0.00005."""
    try:
        exp = Decimal(str(text).strip()).as_tuple().exponent
    except Exception:  # noqa: BLE001 - not a printed number
        return 0.0
    return 0.5 * 10.0 ** int(exp) if isinstance(exp, int) else 0.0


def compare_table(res: TableResult, paper: pd.DataFrame | None) -> pd.DataFrame:
    """One row per cell: thesis and reproduced mean/std, difference, σ and flag (see module docstring).

    A cell of an ablation row/column (``compare_to`` in the spec) is compared with the printed cell of
    its counterpart; its ``thesis`` text names that counterpart.
    """
    pap = {} if paper is None else {(r["row"], r["column"]): r for _, r in paper.iterrows()}
    spec = res.spec
    out = []
    for _, c in res.cells.iterrows():
        key = (spec.paper_label(c["row"]), spec.paper_label(c["column"]))
        p = pap.get(key)
        ablation = key != (c["row"], c["column"])
        t_mean = None if p is None or pd.isna(p["mean"]) else float(p["mean"])
        t_std = None if p is None or pd.isna(p["std"]) else float(p["std"])
        r_mean = None if pd.isna(c["mean"]) else float(c["mean"])
        r_std = None if pd.isna(c["std"]) else float(c["std"])
        diff = sigma = None
        flag = ""
        if t_mean is None:
            flag = "no thesis value"
        elif r_mean is None:
            flag = "no data"
        else:
            diff = r_mean - t_mean
            parts = [s for s in (r_std, t_std) if s is not None]
            if parts:
                sigma = max(math.sqrt(sum(s * s for s in parts)), printed_resolution(p["mean_text"]))
                flag = "FLAG" if abs(diff) > FLAG_K * sigma else "ok"
            else:
                flag = "n/a (no std)"
        thesis = "" if p is None else (p["mean_text"] + ("" if t_std is None else f" ± {p['std_text']}"))
        if thesis and ablation:
            thesis += f" ({key[1] if key[1] != c['column'] else key[0]})"
        out.append({"row": c["row"], "column": c["column"],
                    "thesis": thesis,
                    "thesis_mean": t_mean, "thesis_std": t_std, "repro_mean": r_mean, "repro_std": r_std,
                    "n": int(c["n"]), "n_expected": int(c["n_expected"]), "diff": diff, "sigma": sigma,
                    "flag": flag})
    return pd.DataFrame(out)


def ablation_summary(spec: TableSpec, cmp_: pd.DataFrame) -> list[dict[str, Any]]:
    """For each ablation row/column of ``spec``: how close it and its printed counterpart come to the paper.

    Both are compared with the same printed cells; only the cells where both have a reproduced
    mean are used (``paired``). ``closer`` names the one with the smaller mean |diff| (``"tie"``, or
    ``""`` without paired cells). Used by the report to show which reading reproduces the paper.
    """
    out = []
    for a in spec.ablations:
        in_cols = a.label in [c.label for c in spec.columns]
        line, other = ("column", "row") if in_cols else ("row", "column")
        mine = cmp_[cmp_[line] == a.label].set_index(other)
        theirs = cmp_[cmp_[line] == a.compare_to].set_index(other)
        both = [k for k in mine.index if k in theirs.index
                and mine.loc[k, "diff"] is not None and theirs.loc[k, "diff"] is not None
                and not pd.isna(mine.loc[k, "diff"]) and not pd.isna(theirs.loc[k, "diff"])]
        d_a = [abs(float(mine.loc[k, "diff"])) for k in both]
        d_p = [abs(float(theirs.loc[k, "diff"])) for k in both]
        mean_a = sum(d_a) / len(d_a) if d_a else None
        mean_p = sum(d_p) / len(d_p) if d_p else None
        closer = "" if not both else ("tie" if mean_a == mean_p
                                      else (a.label if mean_a < mean_p else a.compare_to))
        out.append({"ablation": a.label, "printed": a.compare_to, "cells": len(mine), "paired": len(both),
                    "mean_abs_diff_printed": mean_p, "mean_abs_diff_ablation": mean_a,
                    "flagged_printed": int(sum(theirs.loc[k, "flag"] == "FLAG" for k in both)),
                    "flagged_ablation": int(sum(mine.loc[k, "flag"] == "FLAG" for k in both)),
                    "closer": closer})
    return out


# ----------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """A qualitative statement of a thesis, as a count over one table compared with the claimed count.

    ``check``:

    * ``count_best`` — for each line (a row when ``axis: rows``, a column when ``axis: columns``)
      find the best cell among ``among`` (default: all cells of the line; max, or min when
      ``lower_is_better``); count the lines whose best is one of ``winners`` (ties count for the winner);
    * ``count_greater`` — count the lines where cell ``greater`` > cell ``than``;
    * ``pairs_greater`` — count the ``pairs`` ``[[row, col], [row, col]]`` whose first cell > second.

    The claim holds when ``count <op> claimed``.
    """

    id: str
    table: str
    text: str
    source: str
    check: str
    claimed: int
    op: str = ">="
    axis: str = "rows"
    lines: tuple[str, ...] = ()
    among: tuple[str, ...] = ()
    winners: tuple[str, ...] = ()
    greater: str = ""
    than: str = ""
    pairs: tuple[tuple[tuple[str, str], tuple[str, str]], ...] = ()
    lower_is_better: bool = False

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"claim {self.id}: check={self.check!r}; valid: {', '.join(CHECKS)}")
        if self.op not in OPS:
            raise ValueError(f"claim {self.id}: op={self.op!r}; valid: {', '.join(OPS)}")
        if self.axis not in ("rows", "columns"):
            raise ValueError(f"claim {self.id}: axis={self.axis!r}; valid: rows, columns")


def load_claims(path: Path = SPEC_DIR / "claims.yaml") -> list[Claim]:
    items = yaml.safe_load(Path(path).read_text()) or []
    out = []
    for it in items:
        it = dict(it)
        for k in ("lines", "among", "winners"):
            if k in it:
                it[k] = tuple(str(x) for x in it[k])
        if "pairs" in it:
            it["pairs"] = tuple((tuple(map(str, a)), tuple(map(str, b))) for a, b in it["pairs"])
        out.append(Claim(**it))
    return out


@dataclass
class ClaimOutcome:
    claim: Claim
    thesis_count: int | None
    repro_count: int | None
    total: int
    status: str  # reproduced | not reproduced | not enough data
    partial: bool = False  # some cells used have fewer seeds than the table asks for
    missing: list[tuple[str, str]] = field(default_factory=list)


def _count(claim: Claim, spec: TableSpec, m: Mapping[tuple[str, str], float | None]
           ) -> tuple[int | None, int, list[tuple[str, str]], list[tuple[str, str]]]:
    """(count, number of tests, cells that were needed but empty, cells needed)."""
    rows = [r.label for r in spec.rows]
    cols = [c.label for c in spec.columns]
    lines_all, others = (rows, cols) if claim.axis == "rows" else (cols, rows)
    # ablation rows/columns (not printed) take part only where a claim names them
    printed_lines = [x for x in lines_all if spec.paper_label(x) == x]
    printed_others = [x for x in others if spec.paper_label(x) == x]
    lines = list(claim.lines) or printed_lines

    def cell(line: str, other: str) -> tuple[str, str]:
        return (line, other) if claim.axis == "rows" else (other, line)

    for name in [*lines, *claim.among, *claim.winners, *([claim.greater, claim.than] if claim.greater
                                                         else [])]:
        if name and name not in lines_all + others:
            raise ValueError(f"claim {claim.id}: {name!r} is not a row or column label of table {spec.id}")
    needed: list[tuple[str, str]] = []
    if claim.check == "count_best":
        among = list(claim.among) or printed_others
        needed = [cell(ln, o) for ln in lines for o in among]
    elif claim.check == "count_greater":
        needed = [cell(ln, o) for ln in lines for o in (claim.greater, claim.than)]
    else:
        needed = [c for pair in claim.pairs for c in pair]
        for c in needed:
            if c not in m:
                raise ValueError(f"claim {claim.id}: cell {c} is not in table {spec.id}")
    missing = [c for c in needed if m.get(c) is None]
    total = len(claim.pairs) if claim.check == "pairs_greater" else len(lines)
    if missing:
        return None, total, missing, needed
    n = 0
    if claim.check == "count_best":
        among = list(claim.among) or printed_others
        for ln in lines:
            vals = {o: m[cell(ln, o)] for o in among}
            best = (min if claim.lower_is_better else max)(vals.values())
            n += any(vals[w] == best for w in claim.winners if w in vals)
    elif claim.check == "count_greater":
        n = sum(m[cell(ln, claim.greater)] > m[cell(ln, claim.than)] for ln in lines)
    else:
        n = sum(m[a] > m[b] for a, b in claim.pairs)
    return int(n), total, [], needed


def evaluate_claim(claim: Claim, spec: TableSpec, res: TableResult | None,
                   paper: pd.DataFrame | None) -> ClaimOutcome:
    thesis_count, total, _, _ = _count(claim, spec, paper_matrix(spec, paper)) if paper is not None else (
        None, 0, [], [])
    if res is None:
        return ClaimOutcome(claim, thesis_count, None, total, "not enough data")
    count, total, missing, needed = _count(claim, spec, result_matrix(res))
    if count is None:
        return ClaimOutcome(claim, thesis_count, None, total, "not enough data", missing=missing)
    ok = OPS[claim.op](count, claim.claimed)
    partial = any(res.stats(r, c).n < res.stats(r, c).n_expected for r, c in set(needed))
    return ClaimOutcome(claim, thesis_count, count, total, "reproduced" if ok else "not reproduced",
                        partial=partial)


# ----------------------------------------------------------------------------- the report


def _fmt(x: float | None, fmt: str) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _anchor(spec: TableSpec) -> str:
    """GitHub's anchor of the heading ``## Table <id>`` (lower case, punctuation dropped, spaces → -)."""
    return "table-" + "".join(ch for ch in spec.id.lower() if ch.isalnum() or ch in "-_")


def _md(s: Any) -> str:
    return str(s).replace("|", r"\|")


def build_report(specs: Sequence[TableSpec], records: Records, *, pins: Mapping[str, str] | None = None,
                 claims: Sequence[Claim] | None = None, results_dir: str = "", paper_dir: Path | None = None
                 ) -> tuple[str, dict[str, Any]]:
    """Markdown report and a summary dict (per-table counts, claim statuses) for tests and scripts."""
    kw = {"paper_dir": paper_dir} if paper_dir is not None else {}
    results: dict[str, TableResult] = {}
    papers: dict[str, pd.DataFrame | None] = {}
    comps: dict[str, pd.DataFrame] = {}
    for spec in specs:
        results[spec.id] = build_table(spec, records, pins)
        papers[spec.id] = load_paper(spec, **kw)
        comps[spec.id] = compare_table(results[spec.id], papers[spec.id])
    by_id = {s.id: s for s in specs}
    outcomes = [evaluate_claim(c, by_id[c.table], results.get(c.table), papers.get(c.table))
                for c in (claims or []) if c.table in by_id]

    n_runs = len(records.runs)
    n_done = int((records.runs["status"] == "completed").sum()) if n_runs else 0
    unreadable = records.unreadable()
    L = [
        "# Reproduction report", "",
        f"Generated {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')} by "
        f"`scripts/compare.py` from `{results_dir or records.root}` ({n_runs} records, {n_done} completed"
        f"{f', {len(unreadable)} unreadable' if unreadable else ''}). Regenerate: `make compare`.", "",
    ]
    if unreadable:
        L += ["## Unreadable files", "",
              "These files under the results folder are not run records (truncated, not JSON, or not a JSON "
              "object); they are left out of every table. Move or delete them.", ""]
        L += [f"- `{p}`: {_md(e)}" for p, e in unreadable] + [""]
    L += [
        "## How to read it", "",
        f"* Reproduced cells are the mean ± sample std (ddof={STD_DDOF}) over the table's seeds; `n` is how "
        "many seeds have a value. The thesis columns are the printed numbers (`results/paper/`).",
        f"* `diff` = reproduced − thesis. A cell is **FLAG**ged when |diff| > {FLAG_K:g}·σ with "
        "σ = sqrt(s_repro² + s_thesis²): the combined run-to-run spread of the reproduction (≥ 2 seeds) and "
        "the thesis (printed std; Singh and push-pull print none), floored at half a unit of the last "
        "printed digit. `n/a (no std)` = one seed and no printed std; `no data` = no completed run.",
        "* This is a loose, per-run criterion (not the standard error of the means); see "
        "`docs/decisions/pipeline.md`.", "",
        "## Summary", "",
        "| table | title | cells with data | complete (all seeds) | flagged | within 2σ |",
        "|---|---|--:|--:|--:|--:|",
    ]
    summary: dict[str, Any] = {"tables": {}, "claims": {}}
    for spec in specs:
        cmp_ = comps[spec.id]
        res = results[spec.id]
        have = int((res.cells["n"] > 0).sum())
        complete = int((res.cells["n"] >= res.cells["n_expected"]).sum())
        flagged = int((cmp_["flag"] == "FLAG").sum())
        ok = int((cmp_["flag"] == "ok").sum())
        summary["tables"][spec.id] = {"cells": len(res.cells), "with_data": have, "complete": complete,
                                      "flagged": flagged, "ok": ok}
        L.append(f"| [{spec.id}](#{_anchor(spec)}) | {_md(spec.title)} | {have}/{len(res.cells)} "
                 f"| {complete} | {flagged} | {ok} |")

    L += ["", "## Qualitative claims", "",
          "Each claim is a count over one table; `thesis` = the count on the printed numbers, "
          "`reproduced` = on ours.", "",
          "| claim | table | statement | check | thesis | reproduced | status |",
          "|---|---|---|---|--:|--:|---|"]
    for o in outcomes:
        c = o.claim
        status = o.status + (" (partial seeds)" if o.partial else "")
        if o.missing:
            status += f" — {len(o.missing)} cell(s) empty"
        L.append(
            f"| {c.id} | {c.table} | {_md(c.text)} ({_md(c.source)}) | {c.check} {c.op} "
            f"{c.claimed}/{o.total} | {'' if o.thesis_count is None else o.thesis_count} | "
            f"{'' if o.repro_count is None else o.repro_count} | {status} |")
        summary["claims"][c.id] = {"status": o.status, "thesis": o.thesis_count, "repro": o.repro_count,
                                   "total": o.total, "partial": o.partial}

    ablations = {spec.id: ablation_summary(spec, comps[spec.id]) for spec in specs if spec.ablations}
    if ablations:
        L += ["", "## Readings (ablations)", "",
              "Rows/columns that the paper does not print, each compared with the printed cells of the model "
              "it re-reads (e.g. the std reading of the noise scale against the printed UG column). Over the "
              "cells where both have data: mean |diff| to the paper and flagged cells; `closer` = the "
              "reading nearer the printed numbers.", "",
              r"| table | printed (default reading) | ablation | paired cells | mean \|diff\| printed | "
              r"mean \|diff\| ablation | flagged printed | flagged ablation | closer |",
              "|---|---|---|--:|--:|--:|--:|--:|---|"]
        summary["ablations"] = {}
        for tid, items in ablations.items():
            f = by_id[tid].number_format
            for it in items:
                L.append(
                    f"| {tid} | {_md(it['printed'])} | {_md(it['ablation'])} | {it['paired']}/{it['cells']} "
                    f"| {_fmt(it['mean_abs_diff_printed'], f)} | {_fmt(it['mean_abs_diff_ablation'], f)} "
                    f"| {it['flagged_printed']} | {it['flagged_ablation']} | {_md(it['closer'])} |")
            summary["ablations"][tid] = items

    for spec in specs:
        res, cmp_ = results[spec.id], comps[spec.id]
        f = spec.number_format
        L += ["", f"## Table {spec.id}", "", f"**{_md(spec.title)}** — {_md(spec.source)}.", ""]
        if papers[spec.id] is None:
            L += ["(no published table to compare with)", ""]
        L += ["| row | column | thesis | reproduced | n | diff | σ | flag |",
              "|---|---|--:|--:|--:|--:|--:|---|"]
        for _, r in cmp_.iterrows():
            st = res.stats(r["row"], r["column"])
            rep = format_cell(st, f)
            flag = "**FLAG**" if r["flag"] == "FLAG" else r["flag"]
            L.append(f"| {_md(r['row'])} | {_md(r['column'])} | {_md(r['thesis'])} | {rep} | "
                     f"{r['n']}/{r['n_expected']} | {_fmt(r['diff'], '+' + f)} | {_fmt(r['sigma'], f)} | "
                     f"{flag} |")
        notes = res.notes
        L += ["", "Notes:" if notes else "Notes: none."]
        L += [f"- {_md(n)}" for n in notes]
    return "\n".join(L) + "\n", summary

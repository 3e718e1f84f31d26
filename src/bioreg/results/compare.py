"""Reproduction vs. publication: cell-by-cell verdicts, and the theses' qualitative claims.

For every table spec with a paper CSV, :func:`compare_table` joins the reproduced
cells to the printed ones on (row label, column label) and gives each a verdict:

* ``within`` (✓) / ``outside`` (✗): |reproduced mean − printed mean| ≤ / > 2σ with
  σ = sqrt(s_repro² + s_paper²), where ``s_repro`` is the reproduction's sample std over
  seeds and ``s_paper`` the printed std (Dutta prints one per cell; Singh and the push-pull
  paper print none, then σ = s_repro). σ is floored at half a unit of the last printed digit
  (``75.8`` → 0.05). This is the spread of *single runs*, not the standard error of the
  means: a deliberately loose test that asks "is our mean outside the run-to-run scatter of
  both sets of runs?" (``docs/decisions/pipeline.md``);
* no verdict (–): ``too few seeds`` (fewer than :data:`MIN_SEEDS` seeds have a value: two
  seeds' std says little, one has none), ``no σ`` (the seeds agree exactly, so the
  reproduction has no spread to measure a distance in), ``no published value``, ``no data``.

Claims (``specs/claims.yaml``) are small declarative checks over one table's means;
each is evaluated on the printed numbers (to show the encoding matches the text)
and on the reproduction: *reproduced*, *not reproduced*, or *not enough data*.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bioreg.results.tables import (
    SPEC_DIR,
    TableResult,
    TableSpec,
    paper_matrix,
    result_matrix,
)

__all__ = ["FLAG_K", "MIN_SEEDS", "VERDICTS", "WITHIN", "OUTSIDE", "NO_SIGMA", "FEW_SEEDS", "NO_PUBLISHED",
           "NO_DATA", "GLYPHS", "cell_verdict", "compare_table", "ablation_summary", "Claim", "load_claims",
           "evaluate_claim", "ClaimOutcome", "format_z"]

#: a cell is outside when |difference| > FLAG_K * sigma
FLAG_K = 2.0
#: the fewest seeds with a value for a cell (and each cell of a claim) to get a verdict
MIN_SEEDS = 3
WITHIN, OUTSIDE, NO_SIGMA, FEW_SEEDS, NO_PUBLISHED, NO_DATA = (
    "within", "outside", "no σ", "too few seeds", "no published value", "no data")
VERDICTS = (WITHIN, OUTSIDE, NO_SIGMA, FEW_SEEDS, NO_PUBLISHED, NO_DATA)
#: the mark printed beside each verdict's colour (✓ within, ✗ outside, – no verdict)
GLYPHS = {WITHIN: "✓", OUTSIDE: "✗"}
OPS = {">=": operator.ge, "==": operator.eq, "<=": operator.le, ">": operator.gt, "<": operator.lt}
CHECKS = ("count_best", "count_greater", "pairs_greater")


def printed_resolution(text: str) -> float:
    """Half a unit of the last printed digit: ``"75.8"`` → 0.05, ``"100"`` → 0.5, ``"0.0346"`` → 0.00005."""
    try:
        exp = Decimal(str(text).strip()).as_tuple().exponent
    except Exception:  # noqa: BLE001 - not a printed number
        return 0.0
    return 0.5 * 10.0 ** int(exp) if isinstance(exp, int) else 0.0


def cell_verdict(n: int, r_mean: float | None, r_std: float | None, t_mean: float | None,
                 t_std: float | None, t_text: str = "") -> tuple[str, float | None, float | None]:
    """``(verdict, diff, sigma)`` of one cell under the rules of the module docstring."""
    if r_mean is None or n == 0:
        return NO_DATA, None, None
    if t_mean is None:
        return NO_PUBLISHED, None, None
    diff = r_mean - t_mean
    if n < MIN_SEEDS:
        return FEW_SEEDS, diff, None
    if not r_std:  # None or 0: the seeds agree exactly, there is no spread to measure in
        return NO_SIGMA, diff, None
    sigma = max(math.sqrt(r_std ** 2 + (t_std or 0.0) ** 2), printed_resolution(t_text))
    return (OUTSIDE if abs(diff) > FLAG_K * sigma else WITHIN), diff, sigma


def format_z(diff: float | None, sigma: float | None) -> str:
    """``Δ = +1.3σ``; ``no σ`` without a σ; never ``-0.0``."""
    if diff is None or not sigma:
        return "no σ"
    z = round(diff / sigma, 1)
    return f"Δ = {z + 0.0:+.1f}σ" if z != 0 else "Δ = 0.0σ"


def compare_table(res: TableResult, paper: pd.DataFrame | None) -> pd.DataFrame:
    """One row per cell: published and reproduced mean/std, difference, σ and ``verdict`` (module
    docstring). A cell of an ablation row/column (``compare_to`` in the spec) is compared with the
    printed cell of its counterpart; its ``thesis`` text names that counterpart."""
    pap = {} if paper is None else {(r["row"], r["column"]): r for _, r in paper.iterrows()}
    spec = res.spec
    out = []
    for _, c in res.cells.iterrows():
        key = (spec.paper_label(c["row"]), spec.paper_label(c["column"]))
        p = pap.get(key)
        t_mean = None if p is None or pd.isna(p["mean"]) else float(p["mean"])
        t_std = None if p is None or pd.isna(p["std"]) else float(p["std"])
        r_mean = None if pd.isna(c["mean"]) else float(c["mean"])
        r_std = None if pd.isna(c["std"]) else float(c["std"])
        verdict, diff, sigma = cell_verdict(int(c["n"]), r_mean, r_std, t_mean, t_std,
                                            "" if p is None else str(p["mean_text"]))
        thesis = "" if p is None else (p["mean_text"] + ("" if t_std is None else f" ± {p['std_text']}"))
        if thesis and key != (c["row"], c["column"]):
            thesis += f" ({key[1] if key[1] != c['column'] else key[0]})"
        out.append({"row": c["row"], "column": c["column"], "thesis": thesis,
                    "thesis_mean": t_mean, "thesis_std": t_std, "repro_mean": r_mean, "repro_std": r_std,
                    "n": int(c["n"]), "n_expected": int(c["n_expected"]), "diff": diff, "sigma": sigma,
                    "z": None if diff is None or not sigma else diff / sigma, "verdict": verdict})
    return pd.DataFrame(out, columns=["row", "column", "thesis", "thesis_mean", "thesis_std", "repro_mean",
                                      "repro_std", "n", "n_expected", "diff", "sigma", "z", "verdict"])


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
                    "flagged_printed": int(sum(theirs.loc[k, "verdict"] == OUTSIDE for k in both)),
                    "flagged_ablation": int(sum(mine.loc[k, "verdict"] == OUTSIDE for k in both)),
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
    #: the (row, column) cells the claim rests on, in the order it reads them
    cells: list[tuple[str, str]] = field(default_factory=list)


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
    needed = list(dict.fromkeys(needed))
    if count is None:
        return ClaimOutcome(claim, thesis_count, None, total, "not enough data", missing=missing,
                            cells=needed)
    ok = OPS[claim.op](count, claim.claimed)
    partial = any(res.stats(r, c).n < res.stats(r, c).n_expected for r, c in needed)
    return ClaimOutcome(claim, thesis_count, count, total, "reproduced" if ok else "not reproduced",
                        partial=partial, cells=needed)

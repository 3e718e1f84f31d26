"""Which cells a claim compares: every claim of ``specs/claims.yaml`` as *lines* of pairwise comparisons.

A claim counts the lines (rows or columns of one table, or the listed pairs) on which something
holds and compares the count with the claimed one. Every check has the same shape, a *line*:

* ``count_best`` — line ℓ holds when one of the ``winners`` is the best of ``among`` on ℓ: some
  winner w is at least as good as every other cell o of ``among`` (ties count for the winner, as
  in :mod:`bioreg.results.compare`); comparisons: every (w, o);
* ``count_greater`` — one comparison per line, ``greater`` > ``than``;
* ``pairs_greater`` — one line per listed pair, first > second.

"Better" is "greater", or "lower" for a ``count_best`` claim with ``lower_is_better``. A line is
*supported* when some winner is resolved better than every other of its line, *contradicted* when
some other is resolved better than every winner, and open otherwise. With S supported and C
contradicted lines out of L, the true count lies in [S, L − C]; the claim ``count <op> claimed`` is
*supported* when the op holds for every count in that range, *contradicted* when it holds for
none, and *inconclusive* otherwise (:func:`count_verdict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bioreg.results.claim_stats.seedwise import CellId
from bioreg.results.compare import OPS, Claim
from bioreg.results.tables import TableSpec

__all__ = ["Line", "ClaimPlan", "plan_claim", "comparison_label", "count_holding", "count_verdict",
           "lines_required", "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE"]

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


@dataclass(frozen=True)
class Line:
    """One line of a claim: it holds when some ``winners`` cell beats every ``others`` cell."""

    label: str
    winners: tuple[CellId, ...]
    others: tuple[CellId, ...]
    sign: int = 1  # +1: better = greater; −1: better = lower
    ties_hold: bool = False  # count_best: a tie with the best counts for the winner

    @property
    def pairs(self) -> list[tuple[CellId, CellId]]:
        return [(w, o) for w in self.winners for o in self.others]


@dataclass(frozen=True)
class ClaimPlan:
    claim_id: str
    table: str
    lines: tuple[Line, ...]
    op: str
    claimed: int

    @property
    def pairs(self) -> list[tuple[CellId, CellId, int]]:
        """Every comparison (first, second, sign) of the claim, once, in line order."""
        seen: dict[tuple[CellId, CellId, int], None] = {}
        for ln in self.lines:
            for w, o in ln.pairs:
                seen.setdefault((w, o, ln.sign))
        return list(seen)

    @property
    def cells(self) -> list[CellId]:
        seen: dict[CellId, None] = {}
        for w, o, _ in self.pairs:
            seen.setdefault(w)
            seen.setdefault(o)
        return list(seen)


def _check_names(claim: Claim, spec: TableSpec, names: list[str]) -> None:
    known = {a.label for a in (*spec.rows, *spec.columns)}
    for name in names:
        if name and name not in known:
            raise ValueError(f"claim {claim.id}: {name!r} is not a row or column label of table {spec.id}")


def _best_lines(claim: Claim, lines: list[str], printed_others: list[str]) -> list[Line]:
    among = list(claim.among) or printed_others
    winners = [w for w in claim.winners if w in among]
    if not winners:
        raise ValueError(f"claim {claim.id}: none of the winners {list(claim.winners)} is among {among}")
    others = [o for o in among if o not in winners]

    def cell(line: str, other: str) -> CellId:
        return (line, other) if claim.axis == "rows" else (other, line)

    sign = -1 if claim.lower_is_better else 1
    return [Line(ln, tuple(cell(ln, w) for w in winners), tuple(cell(ln, o) for o in others), sign, True)
            for ln in lines]


def comparison_label(first: CellId, second: CellId) -> str:
    """``CG − Baseline (Fog)`` when the cells share a row, ``A − B (Test)`` a column, else both in full."""
    if first[0] == second[0]:
        return f"{first[1]} − {second[1]} ({first[0]})"
    if first[1] == second[1]:
        return f"{first[0]} − {second[0]} ({first[1]})"
    return f"{first[0]} / {first[1]} − {second[0]} / {second[1]}"


def plan_claim(claim: Claim, spec: TableSpec) -> ClaimPlan:
    """The lines and comparisons of ``claim`` on ``spec`` (the defaults of
    :func:`bioreg.results.compare.evaluate_claim`: all printed lines, ``among`` = all printed others)."""
    rows, cols = [r.label for r in spec.rows], [c.label for c in spec.columns]
    lines_all, others_all = (rows, cols) if claim.axis == "rows" else (cols, rows)
    printed_lines = [x for x in lines_all if spec.paper_label(x) == x]
    printed_others = [x for x in others_all if spec.paper_label(x) == x]
    lines = list(claim.lines) or printed_lines
    _check_names(claim, spec, [*lines, *claim.among, *claim.winners, claim.greater, claim.than])
    if claim.check == "count_best":
        out = _best_lines(claim, lines, printed_others)
    elif claim.check == "count_greater":
        def cell(line: str, other: str) -> CellId:
            return (line, other) if claim.axis == "rows" else (other, line)
        out = [Line(ln, (cell(ln, claim.greater),), (cell(ln, claim.than),)) for ln in lines]
    else:
        cells = {(r, c) for r in rows for c in cols}
        for a, b in claim.pairs:
            for c in (a, b):
                if tuple(c) not in cells:
                    raise ValueError(f"claim {claim.id}: cell {tuple(c)} is not in table {spec.id}")
        out = [Line(f"{a[0]} / {a[1]} > {b[0]} / {b[1]}", (tuple(a),), (tuple(b),)) for a, b in claim.pairs]
    if not out:
        raise ValueError(f"claim {claim.id}: no lines to judge on table {spec.id}")
    return ClaimPlan(claim.id, spec.id, tuple(out), claim.op, int(claim.claimed))


def count_holding(plan: ClaimPlan, means: Mapping[CellId, np.ndarray | float]) -> np.ndarray:
    """How many lines hold, for each of a batch of mean vectors (``means[cell]`` of shape ``(B,)``
    or a scalar: then the result has shape ``()``): same rule as the counts of the comparison report."""
    total: np.ndarray | int = 0
    for ln in plan.lines:
        line_holds = None
        for w in ln.winners:
            gap = [ln.sign * (np.asarray(means[w]) - np.asarray(means[o])) for o in ln.others]
            beats = np.all([(g >= 0) if ln.ties_hold else (g > 0) for g in gap], axis=0)
            line_holds = beats if line_holds is None else (line_holds | beats)
        total = total + np.asarray(line_holds, dtype=int)
    return np.asarray(total)


def lines_required(op: str, claimed: int, n_lines: int) -> tuple[int, bool]:
    """(how many lines must be resolved, whether in the claimed direction) for ``count <op> claimed``:
    ``>= k`` and ``== k`` need k supported lines, ``> k`` k + 1; ``<= k`` needs L − k contradicted,
    ``<`` L − k + 1."""
    if op in (">=", "=="):
        return claimed, True
    if op == ">":
        return claimed + 1, True
    return (n_lines - claimed) + (1 if op == "<" else 0), False


def count_verdict(op: str, claimed: int, supported: int, contradicted: int, n_lines: int) -> str:
    """The claim's verdict from its resolved lines: the count lies in [S, L − C] (module docstring)."""
    holds = [OPS[op](c, claimed) for c in range(supported, n_lines - contradicted + 1)]
    if holds and all(holds):
        return SUPPORTED
    if not any(holds):
        return CONTRADICTED
    return INCONCLUSIVE

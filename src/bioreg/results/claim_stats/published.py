"""The published side of a claim: each printed cell as (mean, std, runs), and the test from summaries.

Each table's run count comes from ``specs/published_runs.yaml`` (what the source states, or the
documented assumption where it states none). A printed std is read as a sample std (``ddof = 1``);
a printed ``0.0`` is read as half a unit of its last digit (0.05), the largest std that still prints
as ``0.0`` — the conservative reading of a rounded zero (Dutta prints ``0.0`` for every CP cell of
Tables 2.3/2.4 over 5 runs). A comparison of two printed cells is Welch's t-test from the summaries,
:func:`scipy.stats.ttest_ind_from_stats` (``equal_var=False``): the printed numbers say nothing
about which runs were matched, so it is never paired.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
import yaml
from scipy import stats

from bioreg.results.claim_stats.seedwise import NO_SPREAD, CellId
from bioreg.results.compare import printed_resolution
from bioreg.results.tables import SPEC_DIR, TableSpec

__all__ = ["PublishedRuns", "PublishedCell", "load_published_runs", "published_runs", "published_cells",
           "PublishedTest", "welch_from_stats", "NO_STD", "ONE_RUN"]

RUNS_FILE = SPEC_DIR / "published_runs.yaml"
NO_STD = "no std printed"
ONE_RUN = "a single run"


@dataclass(frozen=True)
class PublishedRuns:
    table: str
    runs: int
    stated: bool
    std: str  # "sample" | "none"
    basis: str


@dataclass(frozen=True)
class PublishedCell:
    mean: float
    std: float | None
    n: int


@cache
def _load(path: str) -> dict[str, PublishedRuns]:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    out = {}
    for tid, it in raw.items():
        bad = set(it) - {"runs", "stated", "std", "basis"}
        if bad or it.get("std") not in ("sample", "none") or int(it.get("runs", 0)) < 1:
            raise ValueError(f"{Path(path).name}: table {tid!r}: {dict(it)!r} needs runs >= 1, stated, "
                             f"std (sample | none) and basis")
        out[str(tid)] = PublishedRuns(str(tid), int(it["runs"]), bool(it["stated"]), str(it["std"]),
                                      str(it.get("basis", "")))
    return out


def load_published_runs(path: Path = RUNS_FILE) -> dict[str, PublishedRuns]:
    """Every table's entry of ``published_runs.yaml``."""
    return dict(_load(str(path)))


def published_runs(table_id: str, path: Path = RUNS_FILE) -> PublishedRuns:
    runs = _load(str(path))
    if str(table_id) not in runs:
        raise ValueError(f"table {table_id!r} has no entry in {Path(path).name}; entries: {', '.join(runs)}")
    return runs[str(table_id)]


def _std(row: pd.Series) -> float | None:
    if pd.isna(row["std"]):
        return None
    std = float(row["std"])
    return std if std > 0 else printed_resolution(str(row["std_text"]))


def published_cells(spec: TableSpec, paper: pd.DataFrame | None,
                    runs: PublishedRuns | None = None) -> dict[CellId, PublishedCell]:
    """The printed cells of ``spec`` (``paper`` from :func:`bioreg.results.tables.load_paper`) as
    ``{(row, column): PublishedCell(mean, std, n)}``; ablation rows/columns have none of their own."""
    if paper is None:
        return {}
    runs = runs or published_runs(spec.id)
    printed = {(r.label, c.label) for r in spec.rows for c in spec.columns
               if spec.paper_label(r.label) == r.label and spec.paper_label(c.label) == c.label}
    out = {}
    for _, row in paper.iterrows():
        key = (str(row["row"]), str(row["column"]))
        if key in printed and not pd.isna(row["mean"]):
            std = _std(row) if runs.std == "sample" else None
            out[key] = PublishedCell(float(row["mean"]), std, runs.runs)
    return out


@dataclass(frozen=True)
class PublishedTest:
    diff: float | None  # printed mean(first) − mean(second)
    p: float | None  # Welch, two-sided; None when untestable
    reason: str = ""  # why untestable: no std printed | a single run | no spread | a cell not printed


def welch_from_stats(first: PublishedCell | None, second: PublishedCell | None) -> PublishedTest:
    """Welch's t-test of two printed cells from their means, stds and run counts."""
    if first is None or second is None:
        return PublishedTest(None, None, "a cell not printed")
    diff = first.mean - second.mean
    if first.std is None or second.std is None:
        return PublishedTest(diff, None, NO_STD)
    if min(first.n, second.n) < 2:
        return PublishedTest(diff, None, ONE_RUN)
    if first.std == 0 and second.std == 0:
        return PublishedTest(diff, None, NO_SPREAD)
    res = stats.ttest_ind_from_stats(first.mean, first.std, first.n, second.mean, second.std, second.n,
                                     equal_var=False)
    p = float(res.pvalue)
    return PublishedTest(diff, p if math.isfinite(p) else None, "" if math.isfinite(p) else NO_SPREAD)


def as_published(cells: Mapping[CellId, tuple[float, float | None, int] | PublishedCell]
                 ) -> dict[CellId, PublishedCell]:
    """Accept ``{cell: (mean, std, n)}`` tuples as well as :class:`PublishedCell` values."""
    return {k: v if isinstance(v, PublishedCell) else PublishedCell(float(v[0]), None if v[1] is None
                                                                     else float(v[1]), int(v[2]))
            for k, v in cells.items()}

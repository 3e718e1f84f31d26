"""Claims with statistics: every thesis claim judged on seed-level evidence.

A claim of ``specs/claims.yaml`` becomes lines of pairwise cell comparisons (:mod:`.plan`); each
comparison gets a mean difference, a percentile bootstrap interval and a paired or Welch t-test
(:mod:`.seedwise`); Holm's correction across one claim's comparisons and the interval's sign decide
*supported* / *contradicted* / *inconclusive* (:mod:`.judge`). The printed numbers get the same test
from their means, stds and run counts (:mod:`.published`), and :mod:`.power` says how many seeds
would resolve the published difference. The rules in plain words: ``docs/tables.md``.

Entry points for a report: :func:`judge_table` (all claims of one built table),
:func:`table_cell_intervals` (each cell's 95 % interval and whether the published value is in it),
:func:`summary` / :func:`comparison_rows` (the claims table as text).

Layering: this package builds on :mod:`bioreg.results.compare` (``Claim``, ``OPS``) and
:mod:`bioreg.results.tables`; it must be imported by the report, never by ``compare`` or ``tables``.
"""

from bioreg.results.claim_stats.judge import (
    NO_DATA,
    UNTESTABLE,
    ClaimJudgement,
    ComparisonResult,
    LineResult,
    StatsOptions,
    count_probability,
    judge_claim,
)
from bioreg.results.claim_stats.plan import CONTRADICTED, INCONCLUSIVE, SUPPORTED, ClaimPlan, Line, plan_claim
from bioreg.results.claim_stats.power import seeds_needed, t_power
from bioreg.results.claim_stats.published import (
    PublishedCell,
    PublishedRuns,
    load_published_runs,
    published_cells,
    welch_from_stats,
)
from bioreg.results.claim_stats.seedwise import (
    CellId,
    CellInterval,
    SeedComparison,
    cell_interval,
    compare_seeds,
    holm,
    is_paired,
)
from bioreg.results.claim_stats.table import judge_table, table_cell_intervals
from bioreg.results.claim_stats.text import comparison_rows, summary

__all__ = [
    "SUPPORTED", "CONTRADICTED", "INCONCLUSIVE", "UNTESTABLE", "NO_DATA",
    "CellId", "StatsOptions", "ClaimJudgement", "ComparisonResult", "LineResult", "ClaimPlan", "Line",
    "SeedComparison", "CellInterval", "PublishedCell", "PublishedRuns",
    "judge_table", "judge_claim", "table_cell_intervals", "cell_interval", "compare_seeds", "is_paired",
    "holm", "plan_claim", "count_probability", "seeds_needed", "t_power", "load_published_runs",
    "published_cells", "welch_from_stats", "summary", "comparison_rows",
]

"""Entry points for a report: judge every claim of a built table, and every cell's interval."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bioreg.results.claim_stats.judge import ClaimJudgement, StatsOptions, judge_claim
from bioreg.results.claim_stats.published import published_cells
from bioreg.results.claim_stats.seedwise import CellId, CellInterval, cell_interval
from bioreg.results.compare import Claim
from bioreg.results.tables import TableResult

__all__ = ["judge_table", "table_cell_intervals"]


def judge_table(res: TableResult, claims: Sequence[Claim], paper: pd.DataFrame | None,
                options: StatsOptions | None = None) -> list[ClaimJudgement]:
    """Judge the claims of ``res``'s table (the others in ``claims`` are skipped) from its per-seed
    values (``res.per_seed``, filled by :func:`bioreg.results.tables.build_table`) and the printed
    cells (``paper`` from :func:`bioreg.results.tables.load_paper`, run counts from
    ``specs/published_runs.yaml``). Comparisons shared by several claims are computed once."""
    opt = options or StatsOptions()
    pub = published_cells(res.spec, paper)
    cache: dict = {}
    return [judge_claim(c, res.spec, res.per_seed, pub, opt, cache) for c in claims if c.table == res.spec.id]


def table_cell_intervals(res: TableResult, paper: pd.DataFrame | None, level: float = 0.95
                         ) -> dict[CellId, CellInterval]:
    """Every cell's t-interval of the reproduced mean and whether the published value lies in it (an
    ablation row/column is set against the printed cell of its ``compare_to``, as the 2σ check does)."""
    printed: dict[CellId, float] = {}
    if paper is not None:
        for _, p in paper.iterrows():
            if not pd.isna(p["mean"]):
                printed[(str(p["row"]), str(p["column"]))] = float(p["mean"])
    spec = res.spec
    out = {}
    for r in spec.rows:
        for c in spec.columns:
            pub = printed.get((spec.paper_label(r.label), spec.paper_label(c.label)))
            out[(r.label, c.label)] = cell_interval(res.per_seed.get((r.label, c.label), {}), pub, level)
    return out

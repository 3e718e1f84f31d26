"""Plain-text cells for the claims table of a report: one row per claim, one per comparison.

Renderers (Markdown and HTML) take these strings as they are; nothing here formats for one of them.
"""

from __future__ import annotations

from bioreg.results.claim_stats.judge import UNTESTABLE, ClaimJudgement, ComparisonResult
from bioreg.results.claim_stats.plan import SUPPORTED, comparison_label
from bioreg.results.claim_stats.seedwise import CI_METHOD

__all__ = ["summary", "comparison_rows", "fmt_p"]

#: claims with at most this many comparisons list each in the summary row
LIST_AT_MOST = 4


def fmt_p(p: float | None) -> str:
    return "–" if p is None else "<0.001" if p < 1e-3 else f"{p:.3f}"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3g}"


def _interval(c: ComparisonResult) -> str:
    if c.ci is None:
        return f"{_num(c.diff)} ({c.reason or 'no interval'})"
    return f"{_num(c.diff)} [{c.ci[0]:.3g}, {c.ci[1]:.3g}]"


def _published_text(j: ClaimJudgement) -> str:
    if j.published_support == SUPPORTED:
        return "supported by its printed numbers"
    if j.published_support == UNTESTABLE:
        return "untestable (no printed spread or a single run)"
    return f"not supported by its printed numbers ({j.published_support})"


def _power_text(j: ClaimJudgement, seeds_run: int) -> str:
    if j.seeds_needed is None:
        return f"cannot say: {j.seeds_needed_reason}"
    return f"needs ≥ {j.seeds_needed} seeds per arm (has {seeds_run})"


def summary(j: ClaimJudgement) -> dict[str, str]:
    """The claims-table row of ``j``: ``id, verdict, evidence, intervals, p_holm, count_probability,
    published, power`` as text (intervals and p-values listed for claims of ≤ 4 comparisons, else
    a count of resolved comparisons; the details are in :func:`comparison_rows`)."""
    comps = j.comparisons
    if len(comps) <= LIST_AT_MOST:
        intervals = "; ".join(f"{comparison_label(c.first, c.second)}: {_interval(c)}" for c in comps)
        p_holm = "; ".join(fmt_p(c.p_holm) for c in comps)
    else:
        resolved = sum(c.verdict == SUPPORTED for c in comps)
        intervals = f"{len(comps)} comparisons, {resolved} resolved for the claim (see details)"
        ps = [c.p_holm for c in comps if c.p_holm is not None]
        p_holm = f"{fmt_p(min(ps))} … {fmt_p(max(ps))}" if ps else "–"
    prob = "–" if j.count_probability is None else f"{j.count_probability:.2f}"
    seeds_run = max((max(c.seeds.n_first, c.seeds.n_second) for c in comps), default=0)
    return {
        "id": j.claim.id, "verdict": j.verdict, "evidence": j.reason, "intervals": intervals,
        "p_holm": p_holm, "count_probability": f"P(count {j.claim.op} {j.claim.claimed}) = {prob}",
        "published": _published_text(j), "published_detail": j.published_reason,
        "power": _power_text(j, seeds_run),
        "method": (f"{round(100 * j.options.level)} % {CI_METHOD} bootstrap intervals "
                   f"({j.options.n_resamples} resamples), Holm across {len(comps)} comparison"
                   f"{'s' if len(comps) != 1 else ''}"),
    }


def comparison_rows(j: ClaimJudgement) -> list[dict[str, str]]:
    """One text row per comparison of ``j`` (line, comparison, paired/unpaired with n, difference and
    interval, p, Holm p, verdict and why, printed difference, printed Holm p and verdict, seeds needed)."""
    line_of = {i: ln.label for ln in j.lines for i in ln.comparisons}
    rows = []
    for i, c in enumerate(j.comparisons):
        s = c.seeds
        design = f"paired, {len(s.seeds)} seeds" if s.paired else f"unpaired, {s.n_first} vs {s.n_second}"
        rows.append({
            "line": line_of.get(i, ""), "comparison": comparison_label(c.first, c.second),
            "claimed": c.claimed, "design": design, "difference": _interval(c), "p": fmt_p(c.p),
            "p_holm": fmt_p(c.p_holm), "verdict": c.verdict + (f" ({c.reason})" if c.reason else ""),
            "published_difference": _num(c.published.diff), "published_p_holm": fmt_p(c.published_p_holm),
            "published_verdict": c.published_verdict + (f" ({why})" if (why := c.published.reason) else ""),
            "seeds_needed": "–" if c.seeds_needed is None else str(c.seeds_needed),
            "power_basis": c.power_basis,
        })
    return rows

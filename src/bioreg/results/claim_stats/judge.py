"""Claim verdicts from seed-level evidence: supported / contradicted / inconclusive, with Holm's correction.

For each comparison (first, second) of a claim (:mod:`.plan`) the reproduction gives a mean
difference, a bootstrap interval and a two-sided t-test (:mod:`.seedwise`). The p-values of all
comparisons of one claim are Holm-adjusted together. A comparison is **resolved** in a direction only
when *both* its Holm-adjusted p < α *and* its (unadjusted, 1 − α) bootstrap interval excludes 0 on
that side: Holm controls the chance that any comparison of the claim is resolved wrongly (the
family-wise error) at α; the interval is the distribution-free check of the sign, which with 3–5
seeds does not rest on the t-test's normality. It is *supported* when resolved in the claimed
direction, *contradicted* when resolved in the opposite one, *inconclusive* otherwise. Lines and the
claim follow (:func:`.plan.count_verdict`).

The printed numbers get the same treatment (Welch from mean, std and runs; Holm across the claim;
resolved when the adjusted p < α), giving ``published_support``. ``count_probability`` is the
bootstrap probability that the claim's count condition holds (seeds resampled, counts recomputed).
``seeds_needed``: seeds per arm that resolve the published difference (the reproduced one where
nothing is printed) with 80 % power at the level Holm's first step uses, α/m for m comparisons
(:mod:`.power`), given the reproduction's spread (the printed one when the reproduction has none).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bioreg.results.claim_stats.plan import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    ClaimPlan,
    Line,
    comparison_label,
    count_holding,
    count_verdict,
    lines_required,
    plan_claim,
)
from bioreg.results.claim_stats.power import seeds_needed
from bioreg.results.claim_stats.published import PublishedCell, PublishedTest, as_published, welch_from_stats
from bioreg.results.claim_stats.seedwise import (
    TOO_FEW,
    CellId,
    SeedComparison,
    clean_values,
    compare_seeds,
    holm,
)
from bioreg.results.compare import OPS, Claim
from bioreg.results.tables import TableSpec

__all__ = ["StatsOptions", "ComparisonResult", "LineResult", "ClaimJudgement", "judge_claim", "UNTESTABLE",
           "NO_DATA", "count_probability"]

UNTESTABLE = "untestable"
NO_DATA = "no data"


@dataclass(frozen=True)
class StatsOptions:
    alpha: float = 0.05  # family-wise error per claim (Holm) and 1 − the interval level
    n_resamples: int = 10_000  # bootstrap resamples, intervals and count probability
    seed: int = 0  # every bootstrap draws from default_rng([seed, crc32 of what it resamples])
    power: float = 0.8  # target power of seeds_needed

    @property
    def level(self) -> float:
        return 1.0 - self.alpha


@dataclass(frozen=True)
class ComparisonResult:
    """One comparison of a claim: reproduced evidence, verdict, printed-number test and power."""

    first: CellId
    second: CellId
    claimed: str  # ">" (the claim says first > second) or "<"
    seeds: SeedComparison
    p_holm: float | None
    verdict: str  # supported | contradicted | inconclusive
    reason: str  # why inconclusive ("" when resolved)
    published: PublishedTest
    published_p_holm: float | None
    published_verdict: str  # supported | contradicted | inconclusive | untestable
    seeds_needed: int | None
    power_basis: str  # which difference and spread seeds_needed rests on, or why there is none

    @property
    def paired(self) -> bool:
        return self.seeds.paired

    @property
    def diff(self) -> float | None:
        """Reproduced mean(first) − mean(second)."""
        return self.seeds.diff

    @property
    def ci(self) -> tuple[float, float] | None:
        return self.seeds.ci

    @property
    def p(self) -> float | None:
        return self.seeds.p


@dataclass(frozen=True)
class LineResult:
    label: str
    verdict: str
    published_verdict: str
    seeds_needed: int | None
    comparisons: tuple[int, ...]  # indices into ClaimJudgement.comparisons


@dataclass(frozen=True)
class ClaimJudgement:
    claim: Claim
    verdict: str  # supported | contradicted | inconclusive | no data
    reason: str
    comparisons: tuple[ComparisonResult, ...]
    lines: tuple[LineResult, ...]
    supported_lines: int
    contradicted_lines: int
    count: int | None  # the count on the reproduced means (as compare.evaluate_claim counts)
    count_probability: float | None  # bootstrap P(count <op> claimed)
    count_probability_basis: str  # "seeds resampled jointly" | "each cell resampled" | why none
    published_support: str  # supported | contradicted | inconclusive | untestable
    published_reason: str
    published_count: int | None  # the count on the printed means
    seeds_needed: int | None
    seeds_needed_reason: str
    options: StatsOptions = field(default_factory=StatsOptions)

    @property
    def n_lines(self) -> int:
        return len(self.lines)



def _rng(seed: int, *what: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(repr(what).encode())])


def _seed_comparison(cells: Mapping[CellId, Mapping[int, float]], a: CellId, b: CellId, opt: StatsOptions,
                     cache: dict | None) -> SeedComparison:
    key = (a, b, opt)
    if cache is not None and key in cache:
        return cache[key]
    out = compare_seeds(cells.get(a, {}), cells.get(b, {}), level=opt.level, n_resamples=opt.n_resamples,
                        rng=_rng(opt.seed, a, b))
    if cache is not None:
        cache[key] = out
    return out


def _resolved(p_holm: float | None, ci: tuple[float, float] | None, alpha: float, need_ci: bool,
              diff: float | None) -> int:
    """+1 / −1: first resolved greater / smaller than second; 0: not resolved."""
    if p_holm is None or not p_holm < alpha:
        return 0
    if not need_ci:
        return int(np.sign(diff or 0.0))
    if ci is None:
        return 0
    return 1 if ci[0] > 0 else -1 if ci[1] < 0 else 0


def _verdict(resolved: int, sign: int) -> str:
    return SUPPORTED if resolved * sign > 0 else CONTRADICTED if resolved * sign < 0 else INCONCLUSIVE


def _why_open(c: SeedComparison, p_holm: float | None, alpha: float) -> str:
    if c.n_first == 0 or c.n_second == 0:
        return NO_DATA
    if c.reason:
        return c.reason
    if p_holm is not None and not p_holm < alpha:
        return f"Holm p = {p_holm:.3g} ≥ {alpha:g}"
    return f"{round(100 * (1 - alpha))} % interval includes 0"


def _power(c: SeedComparison, t: PublishedTest, a: PublishedCell | None, b: PublishedCell | None,
           alpha: float, target: float) -> tuple[int | None, str]:
    delta, which = (t.diff, "published") if t.diff is not None else (c.diff, "reproduced")
    if delta is None:
        return None, "no difference to resolve (no data)"
    if delta == 0:
        return None, f"the {which} difference is 0"
    if c.paired and c.sd_diff:
        n, spread = seeds_needed(delta, c.sd_diff, paired=True, alpha=alpha, power=target), \
            f"reproduced spread of the paired differences (sd {c.sd_diff:.3g})"
    elif c.sd_first is not None and c.sd_second is not None and (c.sd_first or c.sd_second):
        n, spread = seeds_needed(delta, c.sd_first, c.sd_second, alpha=alpha, power=target), \
            f"reproduced spread (sd {c.sd_first:.3g}, {c.sd_second:.3g})"
    elif a is not None and b is not None and a.std is not None and b.std is not None:
        n, spread = seeds_needed(delta, a.std, b.std, alpha=alpha, power=target), \
            f"printed spread (sd {a.std:.3g}, {b.std:.3g})"
    else:
        return None, "no spread to plan with (fewer than 2 seeds and no printed std)"
    basis = f"{which} difference {delta:+.3g}, {spread}, α = {alpha:.3g}"
    return n, basis if n is not None else f"beyond reach: {basis}"


def _comparisons(plan: ClaimPlan, cells: Mapping[CellId, Mapping[int, float]],
                 pub: Mapping[CellId, PublishedCell], opt: StatsOptions, cache: dict | None
                 ) -> list[ComparisonResult]:
    pairs = plan.pairs
    seeds = [_seed_comparison(cells, a, b, opt, cache) for a, b, _ in pairs]
    tests = [welch_from_stats(pub.get(a), pub.get(b)) for a, b, _ in pairs]
    p_holm, pub_holm = holm([c.p for c in seeds]), holm([t.p for t in tests])
    alpha_power = opt.alpha / max(1, len(pairs))  # Holm's first (strictest) step
    out = []
    for i, ((a, b, sign), c, t) in enumerate(zip(pairs, seeds, tests, strict=True)):
        verdict = _verdict(_resolved(p_holm[i], c.ci, opt.alpha, True, c.diff), sign)
        pub_verdict = UNTESTABLE if t.p is None else _verdict(
            _resolved(pub_holm[i], None, opt.alpha, False, t.diff), sign)
        n, basis = _power(c, t, pub.get(a), pub.get(b), alpha_power, opt.power)
        out.append(ComparisonResult(
            a, b, ">" if sign > 0 else "<", c, p_holm[i], verdict,
            "" if verdict != INCONCLUSIVE else _why_open(c, p_holm[i], opt.alpha),
            t, pub_holm[i], pub_verdict, n, basis))
    return out


def _line_verdict(line: Line, verdict: Mapping[tuple[CellId, CellId], str]) -> str:
    if all(verdict[p] == UNTESTABLE for p in line.pairs):
        return UNTESTABLE
    if any(all(verdict[(w, o)] == SUPPORTED for o in line.others) for w in line.winners):
        return SUPPORTED
    if any(all(verdict[(w, o)] == CONTRADICTED for w in line.winners) for o in line.others):
        return CONTRADICTED
    return INCONCLUSIVE


def _line_need(line: Line, need: Mapping[tuple[CellId, CellId], int | None]) -> int | None:
    """Seeds for the line to resolve: its best winner's hardest comparison."""
    inf = float("inf")
    best = min(max((need[(w, o)] or inf) for o in line.others) for w in line.winners)
    return None if best == inf else int(best)


def _lines(plan: ClaimPlan, comps: Sequence[ComparisonResult]) -> list[LineResult]:
    index = {(c.first, c.second): i for i, c in enumerate(comps)}
    ver = {k: comps[i].verdict for k, i in index.items()}
    pub = {k: comps[i].published_verdict for k, i in index.items()}
    need = {k: comps[i].seeds_needed for k, i in index.items()}
    return [LineResult(ln.label, _line_verdict(ln, ver), _line_verdict(ln, pub), _line_need(ln, need),
                       tuple(index[p] for p in ln.pairs)) for ln in plan.lines]


def count_probability(plan: ClaimPlan, cells: Mapping[CellId, Mapping[int, float]], opt: StatsOptions
                      ) -> tuple[float | None, str]:
    """Bootstrap probability that ``count <op> claimed`` holds: the seeds are resampled (jointly across
    the claim's cells when they all ran the same seeds, keeping the pairing; else within each cell)
    and the count recomputed on the resampled means, ``opt.n_resamples`` times."""
    vals = {c: clean_values(cells.get(c, {})) for c in plan.cells}
    if any(len(v) < 2 for v in vals.values()):
        return None, f"{TOO_FEW} (a cell has fewer than 2)"
    rng, size = _rng(opt.seed, plan.claim_id), opt.n_resamples
    seed_sets = {tuple(sorted(v)) for v in vals.values()}
    if len(seed_sets) == 1:
        seeds = next(iter(seed_sets))
        idx = rng.integers(0, len(seeds), (size, len(seeds)))
        means = {c: np.array([v[s] for s in seeds])[idx].mean(axis=1) for c, v in vals.items()}
        basis = "seeds resampled jointly"
    else:
        means = {c: np.array(list(v.values()))[rng.integers(0, len(v), (size, len(v)))].mean(axis=1)
                 for c, v in vals.items()}
        basis = "each cell resampled"
    counts = count_holding(plan, means)
    return float(np.mean(OPS[plan.op](counts, plan.claimed))), basis


def _point_count(plan: ClaimPlan, means: Mapping[CellId, float | None]) -> int | None:
    if any(means.get(c) is None for c in plan.cells):
        return None
    return int(count_holding(plan, {c: float(means[c]) for c in plan.cells}))


def judge_claim(claim: Claim, spec: TableSpec, cells: Mapping[CellId, Mapping[int, float]],
                published: Mapping[CellId, PublishedCell | tuple[float, float | None, int]] | None = None,
                options: StatsOptions | None = None, cache: dict | None = None) -> ClaimJudgement:
    """Judge ``claim`` on ``spec`` from per-seed values ``cells[(row, column)] = {seed: value}`` and the
    printed cells ``published[(row, column)] = (mean, std, n)`` (or :class:`PublishedCell`; see
    :func:`.published.published_cells`). ``cache`` (a dict) shares comparisons between claims."""
    opt = options or StatsOptions()
    plan = plan_claim(claim, spec)
    pub = as_published(published or {})
    comps = _comparisons(plan, cells, pub, opt, cache)
    lines = _lines(plan, comps)
    n_sup = sum(ln.verdict == SUPPORTED for ln in lines)
    n_con = sum(ln.verdict == CONTRADICTED for ln in lines)
    has_data = [bool(clean_values(cells.get(c, {}))) for c in plan.cells]
    verdict = NO_DATA if not any(has_data) else count_verdict(plan.op, plan.claimed, n_sup, n_con, len(lines))
    means = {c: (float(np.mean(list(v.values()))) if (v := clean_values(cells.get(c, {}))) else None)
             for c in plan.cells}
    prob, prob_basis = count_probability(plan, cells, opt)
    pub_support, pub_reason = _published_support(plan, lines)
    need, need_reason = _claim_need(plan, lines, comps, pub, means)
    return ClaimJudgement(
        claim, verdict, _claim_reason(plan, lines, n_sup, n_con, has_data), tuple(comps), tuple(lines),
        n_sup, n_con, _point_count(plan, means), prob, prob_basis, pub_support, pub_reason,
        _point_count(plan, {c: (p.mean if (p := pub.get(c)) else None) for c in plan.cells}),
        need, need_reason, opt)


def _claim_reason(plan: ClaimPlan, lines: Sequence[LineResult], n_sup: int, n_con: int,
                  has_data: Sequence[bool]) -> str:
    text = (f"{n_sup} of {len(lines)} lines resolved for the claim, {n_con} against, "
            f"{len(lines) - n_sup - n_con} open; the claim needs count {plan.op} {plan.claimed}")
    empty = len(has_data) - sum(has_data)
    return text + (f"; {empty} of its {len(has_data)} cells have no data" if empty else "")


def _published_support(plan: ClaimPlan, lines: Sequence[LineResult]) -> tuple[str, str]:
    testable = [ln for ln in lines if ln.published_verdict != UNTESTABLE]
    if not testable:
        return UNTESTABLE, "the printed numbers have no spread or a single run (see published_runs.yaml)"
    n_sup = sum(ln.published_verdict == SUPPORTED for ln in lines)
    n_con = sum(ln.published_verdict == CONTRADICTED for ln in lines)
    verdict = count_verdict(plan.op, plan.claimed, n_sup, n_con, len(lines))
    return verdict, (f"printed numbers (Welch, Holm): {n_sup} of {len(lines)} lines resolved for the claim, "
                     f"{n_con} against; needs {plan.op} {plan.claimed}")


def _claim_need(plan: ClaimPlan, lines: Sequence[LineResult], comps: Sequence[ComparisonResult],
                pub: Mapping[CellId, PublishedCell], means: Mapping[CellId, float | None]
                ) -> tuple[int | None, str]:
    """Seeds per arm for the lines the claim needs (only lines whose printed means — the reproduced
    ones where nothing is printed — go the claimed way can support it)."""
    k, for_claim = lines_required(plan.op, plan.claimed, len(plan.lines))
    if k <= 0:
        return None, f"count {plan.op} {plan.claimed} holds whatever the lines show"
    ref = {c: (p.mean if (p := pub.get(c)) else means.get(c)) for c in plan.cells}
    if any(v is None for v in ref.values()):
        return None, "cells without a printed or reproduced mean"
    agree = [res for ln, res in zip(plan.lines, lines, strict=True)
             if bool(_point_count(ClaimPlan(plan.claim_id, plan.table, (ln,), ">=", 1), ref)) == for_claim]
    if len(agree) < k:
        return None, f"the means reach {len(agree)} of the {k} lines the claim needs"
    needs = sorted(res.seeds_needed for res in agree if res.seeds_needed is not None)
    if len(needs) < k:
        open_ = next(comps[i] for res in agree if res.seeds_needed is None for i in res.comparisons
                     if comps[i].seeds_needed is None)
        return None, f"{comparison_label(open_.first, open_.second)}: {open_.power_basis}"
    return needs[k - 1], f"{k} lines must resolve; 80 % power per comparison"

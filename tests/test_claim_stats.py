"""Claims with statistics (bioreg.results.claim_stats): seed-level comparisons, Holm, verdict rates on
synthetic per-seed values with known effects, interval coverage, the audit of printed numbers, power.

Rates are asserted over seeded repetitions with tolerances stated beside each assertion. Resample
counts are lowered where the property does not depend on them (noted at each use); the defaults
(10 000) are what the report uses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bioreg.results.aggregate import records_from_dicts
from bioreg.results.claim_stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    UNTESTABLE,
    PublishedCell,
    StatsOptions,
    cell_interval,
    compare_seeds,
    comparison_rows,
    holm,
    judge_claim,
    judge_table,
    load_published_runs,
    plan_claim,
    published_cells,
    seeds_needed,
    summary,
    t_power,
    table_cell_intervals,
    welch_from_stats,
)
from bioreg.results.claim_stats.plan import count_holding, count_verdict
from bioreg.results.claim_stats.seedwise import bootstrap_interval
from bioreg.results.compare import Claim, evaluate_claim, load_claims
from bioreg.results.tables import build_table, load_paper, load_spec, spec_from_dict, table_ids

FAST = StatsOptions(n_resamples=199)  # rates below depend on the t-test and the interval's sign only


def two_column_spec(n_lines: int = 1):
    return spec_from_dict({
        "id": "t", "title": "synthetic", "seeds": [0, 1, 2, 3, 4],
        "rows": [{"label": f"L{i}", "metric": f"summary.m{i}"} for i in range(n_lines)],
        "columns": [{"label": "A", "experiment": "a"}, {"label": "B", "experiment": "b"}]})


def greater_claim(n_lines: int = 1, claimed: int | None = None) -> Claim:
    return Claim(id="c", table="t", text="A beats B", source="test", check="count_greater",
                 claimed=n_lines if claimed is None else claimed, op=">=",
                 lines=tuple(f"L{i}" for i in range(n_lines)), greater="A", than="B")


def draw_cells(rng, effects, n_seeds=5, sd=1.0):
    """Per-seed values of A and B on each line; A's mean is B's + effect (in units of sd)."""
    cells = {}
    for i, eff in enumerate(effects):
        cells[(f"L{i}", "A")] = dict(enumerate(rng.normal(eff * sd, sd, n_seeds)))
        cells[(f"L{i}", "B")] = dict(enumerate(rng.normal(0.0, sd, n_seeds)))
    return cells


# ----------------------------------------------------------------------------- Holm


def test_holm_hand_example_and_untested_entries() -> None:
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> monotone max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # a comparison without a test stays None and is not part of the family (m = 2 here)
    assert holm([0.02, None, 0.04]) == [pytest.approx(0.04), None, pytest.approx(0.04)]
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_holm_matches_statsmodels() -> None:
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    for _ in range(20):  # multipletests takes ~50 ms a call here
        p = rng.uniform(0, 1, rng.integers(1, 30)) ** 3
        assert holm(list(p)) == pytest.approx(list(multipletests(p, method="holm")[1]), abs=1e-12)


# ----------------------------------------------------------------------------- one comparison


def test_paired_only_when_the_seeds_match() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(80, 2, 5)  # a shared per-seed component: what pairing buys
    a = {s: float(base[s] + 0.5 + rng.normal(0, 0.1)) for s in range(5)}
    b = {s: float(base[s] + rng.normal(0, 0.1)) for s in range(5)}
    same = compare_seeds(a, b, n_resamples=999)
    assert same.paired and same.test == "ttest_rel" and same.seeds == (0, 1, 2, 3, 4)
    x, y = [a[s] for s in range(5)], [b[s] for s in range(5)]
    assert same.p == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert same.diff == pytest.approx(np.mean(x) - np.mean(y))
    assert same.p < 1e-3 and same.ci[0] > 0  # pairing removes the shared seed component
    # one seed missing on one side: unpaired Welch on all values of each cell (no seed dropped)
    b4 = {s: b[s] for s in range(4)}
    miss = compare_seeds(a, b4, n_resamples=999)
    assert not miss.paired and miss.test == "welch" and (miss.n_first, miss.n_second) == (5, 4)
    assert miss.p == pytest.approx(stats.ttest_ind(x, y[:4], equal_var=False).pvalue)
    assert miss.p > 0.05  # the shared component now counts as noise
    # same number of seeds, different seeds: unpaired too
    shifted = {s + 10: v for s, v in b.items()}
    assert not compare_seeds(a, shifted, n_resamples=99).paired


def test_degenerate_comparisons_are_inconclusive_with_a_reason() -> None:
    one = compare_seeds({0: 1.0}, {0: 0.0})
    assert one.reason == "too few seeds" and one.p is None and one.ci is None and one.diff == 1.0
    flat = compare_seeds({0: 2.0, 1: 3.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0})  # differences all 1.0
    assert flat.paired and flat.reason == "no spread" and flat.p is None
    a = {0: 80.3, 1: 79.1, 2: 81.7}
    rounded = compare_seeds(a, {k: v - 0.2 for k, v in a.items()})  # differences 0.2 ± 1e-14
    assert rounded.reason == "no spread" and rounded.diff == pytest.approx(0.2)
    const = compare_seeds({0: 1.0, 1: 1.0}, {5: 0.0, 6: 0.0})
    assert not const.paired and const.reason == "no spread"
    half = compare_seeds({0: 1.0, 1: 1.0, 2: 1.0}, {5: 0.0, 6: 0.3, 7: 0.1}, n_resamples=99)
    assert half.reason == "" and half.test == "welch" and half.p is not None  # one side's spread suffices
    assert compare_seeds({0: 1.0, 1: float("nan")}, {0: 1.0, 1: 2.0}).reason == "too few seeds"
    spec, claim = two_column_spec(), greater_claim()
    j = judge_claim(claim, spec, {("L0", "A"): {0: 1.0}, ("L0", "B"): {0: 0.0}}, options=FAST)
    assert j.verdict == INCONCLUSIVE and j.comparisons[0].reason == "too few seeds"
    assert judge_claim(claim, spec, {}, options=FAST).verdict == "no data"


# ----------------------------------------------------------------------------- verdict rates


def verdict_rates(effects, reps=200, seed=0, claimed=None):
    rng = np.random.default_rng(seed)
    spec, claim = two_column_spec(len(effects)), greater_claim(len(effects), claimed)
    out = {SUPPORTED: 0, CONTRADICTED: 0, INCONCLUSIVE: 0}
    for _ in range(reps):
        out[judge_claim(claim, spec, draw_cells(rng, effects), options=FAST).verdict] += 1
    return {k: v / reps for k, v in out.items()}


def test_large_effect_supported_reversed_contradicted_null_inconclusive() -> None:
    # A − B = 3σ, 5 seeds a cell, independent draws (pairing is used since the seeds match; it is
    # valid, it only costs degrees of freedom). Power of the paired test: t_power(5, 3, √2) = 0.936;
    # the rate must be within 3 binomial SE (±0.052 at 200 repetitions) of it and at least 0.9.
    power = t_power(5, 3.0, math.sqrt(2.0), paired=True)
    big = verdict_rates([3.0])
    assert big[SUPPORTED] >= 0.9 and abs(big[SUPPORTED] - power) <= 3 * math.sqrt(power * (1 - power) / 200)
    assert big[CONTRADICTED] == 0
    rev = verdict_rates([-3.0], seed=1)
    assert rev[CONTRADICTED] >= 0.9 and rev[SUPPORTED] == 0
    # null: each wrong verdict has probability α/2 = 0.025 (two-sided test); allow 0.025 + 3 SE (0.033)
    null = verdict_rates([0.0], seed=2)
    assert null[SUPPORTED] <= 0.058 and null[CONTRADICTED] <= 0.058 and null[INCONCLUSIVE] >= 0.9


def test_holm_keeps_the_family_wise_error_of_a_claim() -> None:
    # "A beats B on at least 1 of 5 lines", no effect anywhere: uncorrected, one of the 5 tests comes
    # out positive with probability 1 − 0.975⁵ ≈ 0.12; with Holm the claim's false "supported" rate
    # is at most α/2 = 0.025 (+ 3 SE at 200 repetitions = 0.058)
    rng = np.random.default_rng(3)
    spec, claim = two_column_spec(5), greater_claim(5, claimed=1)
    holm_hits = raw_hits = 0
    for _ in range(200):
        j = judge_claim(claim, spec, draw_cells(rng, [0.0] * 5), options=FAST)
        holm_hits += j.verdict == SUPPORTED
        raw_hits += any(c.p < 0.05 and c.diff > 0 and c.ci[0] > 0 for c in j.comparisons)
    assert holm_hits / 200 <= 0.058
    assert raw_hits / 200 >= 0.07  # what the correction removes (expected ≈ 0.12)


def test_count_claim_needs_enough_lines_and_reports_the_count_probability() -> None:
    rng = np.random.default_rng(4)
    spec = two_column_spec(4)
    cells = draw_cells(rng, [6.0, 6.0, 6.0, 0.0], sd=0.5)
    j3 = judge_claim(greater_claim(4, claimed=3), spec, cells, options=StatsOptions(n_resamples=2000))
    assert j3.verdict == SUPPORTED and j3.supported_lines >= 3
    assert j3.count_probability > 0.95 and j3.count_probability_basis == "seeds resampled jointly"
    j4 = judge_claim(greater_claim(4, claimed=4), spec, cells, options=StatsOptions(n_resamples=2000))
    assert j4.verdict == INCONCLUSIVE  # the 4th line is a null effect
    assert 0.1 < j4.count_probability < 0.9  # its sign flips under resampling
    # the count interval [S, L − C]: ">= 3" with 3 supported is settled; one contradicted line of 4
    # settles "== 4" against the claim
    assert count_verdict(">=", 3, 3, 0, 4) == SUPPORTED and count_verdict("==", 4, 3, 1, 4) == CONTRADICTED
    assert count_verdict(">=", 3, 2, 0, 4) == INCONCLUSIVE and count_verdict(">=", 3, 0, 2, 4) == CONTRADICTED


# ----------------------------------------------------------------------------- intervals


def test_bootstrap_and_t_interval_coverage_on_normal_samples() -> None:
    # 300 seeded trials each; binomial SE of a 0.95 coverage ≈ 0.013. The percentile bootstrap
    # undercovers at small n (a known property: its interval ignores the t quantile's extra width),
    # so at n = 5 we assert that it does (0.80–0.93), at n = 20 that it is near nominal (±0.04);
    # the t-interval of cell_interval is exact for normal data: 0.95 ± 0.04 at n = 5.
    rng = np.random.default_rng(5)

    def coverage(n, two_sample):
        hit = 0
        for _ in range(300):
            x = rng.normal(0, 1, n)
            samples = [x, rng.normal(0, 1, n)] if two_sample else [x]
            lo, hi = bootstrap_interval(samples, level=0.95, n_resamples=999, rng=rng)
            hit += lo <= 0 <= hi
        return hit / 300

    assert 0.80 <= coverage(5, False) <= 0.93
    assert 0.83 <= coverage(5, True) <= 0.95
    assert abs(coverage(20, True) - 0.95) <= 0.04
    t_hits = sum(bool(cell_interval(list(rng.normal(3, 1, 5)), published=3.0).contains_published)
                 for _ in range(300))
    assert abs(t_hits / 300 - 0.95) <= 0.04


def test_cell_interval_is_the_t_interval_and_handles_degenerate_cells() -> None:
    vals = {0: 80.1, 1: 80.9, 2: 79.7, 3: 80.4}
    ci = cell_interval(vals, published=81.5)
    x = np.array(list(vals.values()))
    lo, hi = stats.t.interval(0.95, df=3, loc=x.mean(), scale=stats.sem(x))
    assert (ci.low, ci.high) == (pytest.approx(lo), pytest.approx(hi)) and ci.method == "t"
    assert ci.contains_published is False and cell_interval(vals, published=80.5).contains_published is True
    assert cell_interval(vals).contains_published is None
    assert cell_interval({0: 1.0}).reason == "too few seeds"
    assert cell_interval([2.0, 2.0, 2.0]).reason == "no spread"
    assert cell_interval({}).reason == "no data" and cell_interval({}).mean is None


# ----------------------------------------------------------------------------- the printed numbers


def test_audit_of_a_hand_made_published_table() -> None:
    spec = two_column_spec(2)
    # L0: 80.0 ± 0.2 vs 78.0 ± 0.3 over 5 runs -> Welch t ≈ 12.4, supported by its printed std;
    # L1: 80.1 ± 1.5 vs 79.9 ± 1.4 -> t ≈ 0.22, the printed means order them but the stds do not
    pub = {("L0", "A"): (80.0, 0.2, 5), ("L0", "B"): (78.0, 0.3, 5),
           ("L1", "A"): (80.1, 1.5, 5), ("L1", "B"): (79.9, 1.4, 5)}
    only0 = Claim(id="c0", table="t", text="", source="", check="count_greater", claimed=1, lines=("L0",),
                  greater="A", than="B")
    only1 = Claim(id="c1", table="t", text="", source="", check="count_greater", claimed=1, lines=("L1",),
                  greater="A", than="B")
    j0, j1 = (judge_claim(c, spec, {}, pub, options=FAST) for c in (only0, only1))
    assert j0.published_support == SUPPORTED and j0.published_count == 1
    assert j1.published_support == INCONCLUSIVE and j1.published_count == 1
    t = (80.0 - 78.0) / math.sqrt((0.2 ** 2 + 0.3 ** 2) / 5)
    df = (0.2 ** 2 / 5 + 0.3 ** 2 / 5) ** 2 / ((0.2 ** 2 / 5) ** 2 / 4 + (0.3 ** 2 / 5) ** 2 / 4)
    assert j0.comparisons[0].published.p == pytest.approx(2 * stats.t.sf(t, df))
    assert j1.comparisons[0].published.p == pytest.approx(
        stats.ttest_ind_from_stats(80.1, 1.5, 5, 79.9, 1.4, 5, equal_var=False).pvalue)
    # no std or a single run: untestable
    no_std_cell = welch_from_stats(PublishedCell(1.0, None, 5), PublishedCell(0.0, 0.1, 5))
    assert no_std_cell.reason == "no std printed"
    assert welch_from_stats(PublishedCell(1.0, 0.1, 1), PublishedCell(0.0, 0.1, 1)).reason == "a single run"
    no_std = {k: (m, None, 1) for k, (m, _, _) in pub.items()}
    assert judge_claim(only0, spec, {}, no_std, options=FAST).published_support == UNTESTABLE


def test_published_runs_cover_every_table_and_follow_the_sources() -> None:
    runs = load_published_runs()
    assert set(runs) == set(table_ids())
    for tid in ("2.3", "2.4", "2.5", "2.6", "4.1", "4.2", "4.3", "4.4", "4.5"):
        # the captions: "averaged over 5 runs"
        assert (runs[tid].runs, runs[tid].stated, runs[tid].std) == (5, True, "sample")
    assert runs["3.2"].runs == 1 and runs["3.2"].std == "none"
    assert all(not runs[t].stated and runs[t].std == "none" for t in runs if t[0] in "np")
    # a printed 0.0 std (every CP cell of Table 2.3) is read as 0.05, half a unit of its last digit
    cells = published_cells(load_spec("2.3"), load_paper(load_spec("2.3")))
    assert cells[("Test Set", "CP")].std == pytest.approx(0.05) and cells[("Test Set", "CP")].n == 5
    assert cells[("Test Set", "Baseline")] == PublishedCell(83.6, 0.7, 5)
    assert ("Test Set", "UG (std = a)") not in published_cells(load_spec("2.5"), load_paper(load_spec("2.5")))


# ----------------------------------------------------------------------------- power


def test_power_matches_statsmodels_and_the_normal_closed_form() -> None:
    # statsmodels computes the far tail with scipy's nct.cdf, which is nan at large noncentrality
    # (e.g. d = 2, n = 30): those points are compared with 1 − (the near tail's miss) instead
    sm = pytest.importorskip("statsmodels.stats.power")
    for d in (0.5, 1.0, 2.0):
        for n in (3, 5, 10, 30):
            for alpha in (0.05, 0.01):
                for paired, ref in ((False, sm.TTestIndPower().power(d, n, alpha)),
                                    (True, sm.TTestPower().power(d, n, alpha, alternative="two-sided"))):
                    got = t_power(n, d, 1.0, None if paired else 1.0, paired=paired, alpha=alpha)
                    if math.isnan(ref):
                        df = n - 1 if paired else 2 * n - 2
                        nc = d * math.sqrt(n if paired else n / 2)
                        ref = stats.nct.sf(stats.t.ppf(1 - alpha / 2, df), df, nc)
                    assert got == pytest.approx(ref, rel=1e-6)
    for d in (0.3, 0.8, 1.5):
        ind = sm.TTestIndPower().solve_power(d, alpha=0.05, power=0.8)
        rel = sm.TTestPower().solve_power(d, alpha=0.05, power=0.8)
        assert seeds_needed(d, 1.0, 1.0) == math.ceil(ind)
        assert seeds_needed(d, 1.0, paired=True) == math.ceil(rel)
    # Welch with unequal spreads: close to the normal approximation n ≈ (z₀.₉₇₅ + z₀.₈)² (s₁² + s₂²) / δ²
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    for delta, s1, s2 in ((0.5, 0.4, 1.2), (0.2, 0.3, 0.5)):
        approx = z ** 2 * (s1 ** 2 + s2 ** 2) / delta ** 2
        assert approx <= seeds_needed(delta, s1, s2) <= approx + 3
    assert seeds_needed(0.0, 1.0, 1.0) is None and seeds_needed(1.0, None, 1.0) is None
    assert seeds_needed(1.0, 0.0, paired=True) is None
    assert t_power(100, 10.0, 1.0, paired=True, alpha=1e-4) == pytest.approx(1.0)  # no nan at large nc


def test_claim_power_says_how_many_seeds_the_printed_difference_needs() -> None:
    spec = two_column_spec(1)
    pub = {("L0", "A"): (80.5, 1.0, 5), ("L0", "B"): (80.0, 1.0, 5)}  # δ = 0.5, σ = 1 each
    j = judge_claim(greater_claim(1), spec, {}, pub, options=FAST)
    sm = pytest.importorskip("statsmodels.stats.power")
    assert j.seeds_needed == math.ceil(sm.TTestIndPower().solve_power(0.5, alpha=0.05, power=0.8))
    assert summary(j)["power"].startswith(f"needs ≥ {j.seeds_needed} seeds per arm")


# ----------------------------------------------------------------------------- the real claims


def synthetic_values(spec, rng):
    return {(r.label, c.label): {s: float(rng.normal(10 + i, 1.0)) for s in spec.seeds}
            for i, (r, c) in enumerate((r, c) for r in spec.rows for c in spec.columns)}


@pytest.mark.parametrize("claim", load_claims(), ids=lambda c: c.id)
def test_every_claim_of_claims_yaml_can_be_judged(claim: Claim) -> None:
    spec = load_spec(claim.table)
    paper = load_paper(spec)
    plan = plan_claim(claim, spec)
    assert plan.pairs and all(ln.winners and ln.others for ln in plan.lines)
    # the lines count as compare.evaluate_claim counts the printed means
    printed = {k: v.mean for k, v in published_cells(spec, paper).items()}
    thesis = evaluate_claim(claim, spec, None, paper).thesis_count
    assert int(count_holding(plan, {c: printed[c] for c in plan.cells})) == thesis
    values = synthetic_values(spec, np.random.default_rng(0))
    j = judge_claim(claim, spec, values, published_cells(spec, paper), options=StatsOptions(n_resamples=99))
    assert j.verdict in (SUPPORTED, CONTRADICTED, INCONCLUSIVE) and j.count_probability is not None
    assert j.published_support in (SUPPORTED, CONTRADICTED, INCONCLUSIVE, UNTESTABLE)
    assert j.published_count == thesis and len(comparison_rows(j)) == len(j.comparisons)
    assert set(summary(j)) >= {"verdict", "intervals", "p_holm", "published", "power", "count_probability"}


def test_audit_of_the_printed_claims() -> None:
    """What the printed numbers support (Welch from mean ± std over 5 runs, Holm per claim, α = 0.05)."""
    got = {}
    for c in load_claims():
        spec = load_spec(c.table)
        got[c.id] = judge_claim(c, spec, {}, published_cells(spec, load_paper(spec)),
                                options=StatsOptions(n_resamples=9)).published_support
    assert got["D4.1-dropblockrandom-beats-dropblock"] == SUPPORTED  # 19/19, every gap ≫ the printed stds
    assert got["D2.5-cg-best-14of19"] == INCONCLUSIVE  # 14 printed wins, none resolved against 4 rivals
    assert all(v == UNTESTABLE for k, v in got.items() if k[0] in "SP" or k.startswith("D3.2"))


def make_records(spec, effect: dict[str, float], seeds=(0, 1, 2)):
    """Completed records of every experiment of ``spec`` on ``seeds``: each metric path = 50 + the
    experiment's effect + a per-seed offset shared by all experiments + small noise."""
    rng = np.random.default_rng(7)
    paths = [a.metric.path for a in (*spec.rows, *spec.columns) if a.metric is not None]
    items = []
    for exp in spec.experiments:
        for s in seeds:
            rec = {"name": exp, "config_key": "k", "seed": s, "status": "completed", "summary": {}}
            for p in paths:
                d = rec
                *head, last = p.split(".")
                for h in head:
                    d = d.setdefault(h, {})
                d[last] = 50.0 + effect.get(exp, 0.0) + 2.0 * s + float(rng.normal(0, 0.05))
            items.append((f"{exp}/k/seed{s}.json", rec))
    return records_from_dicts(items)


def test_judge_table_on_built_records() -> None:
    spec = load_spec("4.1")
    res = build_table(spec, make_records(spec, {"vgg11_dropblockrandom_layer1": 1.0}))
    assert res.per_seed[("Fog", "DropBlock")].keys() == {0, 1, 2}
    paper = load_paper(spec)
    claims = [c for c in load_claims() if c.table in ("4.1", "2.5")]
    (j,) = judge_table(res, claims, paper, StatsOptions(n_resamples=999))
    assert j.claim.id == "D4.1-dropblockrandom-beats-dropblock" and j.verdict == SUPPORTED
    assert all(c.paired and len(c.seeds.seeds) == 3 for c in j.comparisons)  # same seeds: paired
    assert j.published_support == SUPPORTED and j.count_probability == 1.0
    cells = table_cell_intervals(res, paper)
    fog = cells[("Fog", "DropBlock")]
    assert fog.n == 3 and fog.published == pytest.approx(float(
        paper[(paper["row"] == "Fog") & (paper["column"] == "DropBlock")]["mean"].iloc[0]))
    assert fog.contains_published is False  # 52 ± 2 per seed is far from the printed 60-ish accuracies


def test_judge_table_leaves_out_claims_of_other_tables_and_ablation_cells_map_to_their_counterpart() -> None:
    spec = load_spec("2.5")
    res = build_table(spec, make_records(spec, {}))
    paper = load_paper(spec)
    assert judge_table(res, [c for c in load_claims() if c.table == "4.1"], paper) == []
    cells = table_cell_intervals(res, paper)
    printed_ug = float(paper[(paper["row"] == "Fog") & (paper["column"] == "UG")]["mean"].iloc[0])
    assert cells[("Fog", "UG (std = a)")].published == pytest.approx(printed_ug)

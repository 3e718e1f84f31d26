"""The claim statistics in the report (issue 22 wired into issue 19's report object and its two renderings).

* The small scenario of tests/helpers/report_records.py (worked out there): each claim row carries the
  judgement of ``bioreg.results.claim_stats`` on its cells' published-protocol values; smoke runs
  never feed it; a claim that only smoke runs fill has no verdict and its statistics are labelled
  smoke; the Markdown and the page show verdict, interval, Holm p, published support and power.
* Cells: the 95 % t-interval of the mean beside the 2σ rule, against scipy's t quantile.
* Runs stopped by a signal (``requeued`` / ``interrupted``): their own section, never failures.
* A real table (Dutta Table 2.4, its printed numbers, its claim) from **synthetic** records that carry
  the published protocol's settings (CIFAR-10, 350 epochs, the whole test set), 3 seeds per column
  drawn from the printed mean ± std: what ``make report`` shows for runs it accepts; the same
  judgement as ``claim_stats.judge_table`` on the published-protocol cells, whatever smoke runs lie
  beside them. (Real digits runs are smoke runs: docs/tables.md, "Protocol match".)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bioreg.results.aggregate import load_records
from bioreg.results.claim_stats import (
    SUPPORTED,
    UNTESTABLE,
    StatsOptions,
    judge_claim,
    judge_table,
    published_cells,
)
from bioreg.results.compare import load_claims
from bioreg.results.records import RecordStore
from bioreg.results.report import NO_VERDICT, STAT_VERDICTS, build_report
from bioreg.results.report_page import claim_view, render_html, render_markdown, write_report
from bioreg.results.tables import load_paper, load_spec
from helpers.report_records import (
    DIGITS_SMOKE,
    FR,
    PUBLISHED_RUNS,
    record,
    requeued_record,
    scenario_report,
)


def _rows(report) -> dict:
    return {c.claim.id: c for c in report.claims}


def _same(a, b) -> None:
    """Two judgements agree on every number the report shows."""
    assert (a.verdict, a.published_support, a.seeds_needed, a.count_probability) == (
        b.verdict,
        b.published_support,
        b.seeds_needed,
        b.count_probability,
    )
    for x, y in zip(a.comparisons, b.comparisons, strict=True):
        assert (x.first, x.second, x.paired, x.diff, x.ci, x.p, x.p_holm, x.verdict) == (
            y.first,
            y.second,
            y.paired,
            y.diff,
            y.ci,
            y.p,
            y.p_holm,
            y.verdict,
        )


# --------------------------------------------------------------------------- the report object


def test_a_claim_row_carries_the_judgement_of_its_published_protocol_cells(tmp_path: Path) -> None:
    report = scenario_report(tmp_path)
    rows = _rows(report)
    pairs = rows["c-pairs"]
    t2 = pairs.table
    # the same judgement as claim_stats on the cells' published-protocol values and the printed cells
    direct = judge_claim(
        pairs.claim, t2.spec, t2.result.per_seed, published_cells(t2.spec, t2.paper, PUBLISHED_RUNS["t2"])
    )
    _same(pairs.stats, direct)
    # E − D over seeds 0-2: differences 9, 10, 11 -> paired, mean +10, t = 10·√3, df 2
    (c,) = pairs.stats.comparisons
    assert c.paired and c.diff == pytest.approx(10.0) and c.ci == pytest.approx((9.0, 11.0))
    assert c.p == pytest.approx(2 * stats.t.sf(10 * math.sqrt(3), 2)) and c.p_holm == c.p
    assert pairs.stat_verdict == SUPPORTED and pairs.stat_glyph == "✓" and pairs.verdict == "reproduced"
    assert pairs.stats.published_support == UNTESTABLE  # T2 prints no std
    # A − B: B has 2 seeds -> Welch (3 vs 2); printed 80 ± 1 / 70 ± 1 and 50 ± 1 / 40 ± 2 over 5 runs
    greater = rows["c-greater"]
    assert [(x.paired, x.seeds.n_first, x.seeds.n_second) for x in greater.stats.comparisons] == [
        (False, 3, 2)
    ] * 2
    assert greater.stat_verdict == SUPPORTED and greater.stats.published_support == SUPPORTED
    assert greater.verdict == "not enough data"  # the count over the means keeps its ≥ 3 seeds rule
    # the statistics are computed once per table: a comparison shared by two claims is the same object
    assert report.summary()["claims"] == 4
    assert [report.summary()[f"claims_{v.replace(' ', '_')}"] for v in STAT_VERDICTS] == [2, 0, 1, 1]


def test_smoke_runs_never_feed_the_claim_statistics(tmp_path: Path) -> None:
    before = _rows(scenario_report(tmp_path / "a"))
    # smoke runs of D and E (digits, 1 epoch, another config key) that reverse the claim
    smoke = [
        record(name, s, FR, {"extra.fisher_rao.value": base + s}, key="k9", smoke=DIGITS_SMOKE)
        for name, base in (("exp_d", 50.0), ("exp_e", 1.0))
        for s in range(3)
    ]
    report = scenario_report(tmp_path / "b", extra=smoke)
    after = _rows(report)
    assert report.tables[1].cell("D", "Norm").smoke_values == {0: 50.0, 1: 51.0, 2: 52.0}
    for cid in ("c-pairs", "c-greater", "c-best"):
        _same(after[cid].stats, before[cid].stats)
        assert after[cid].smoke_stats is None  # they have published-protocol runs
    # c-best: column C has only smoke runs, so its comparisons have no data on C's side
    assert {(x.seeds.n_first, x.seeds.n_second) for x in after["c-best"].stats.comparisons} == {
        (0, 3),
        (0, 2),
    }
    assert "1 with only smoke runs, never counted" in after["c-best"].stat_reason
    # c-smoke rests on column C alone: no verdict; the smoke runs' statistics are kept apart, labelled
    smoke = after["c-smoke"]
    assert smoke.stat_verdict == NO_VERDICT and smoke.stat_glyph == "–" and smoke.stats.verdict == "no data"
    assert smoke.stat_reason == "smoke runs only: they never give a verdict"
    (c,) = smoke.smoke_stats.comparisons  # C: test 20, 21, 22 vs central 10, 10, 10 (smoke)
    assert c.paired and c.diff == pytest.approx(11.0)
    view = claim_view(smoke)
    assert view["verdict"] == NO_VERDICT and view["smoke"] == "smoke runs (digits · 1 epoch), not evidence"
    assert view["intervals"].startswith("Test Set − Central (C): +11 [")
    assert view["repro_label"] == "smoke runs (not evidence)"
    assert all(r["verdict"] == "– (smoke runs: no verdict)" for r in view["comparisons"])


# --------------------------------------------------------------------------- the renderings


def test_markdown_and_page_show_verdict_interval_corrected_p_published_support_and_power(
    tmp_path: Path,
) -> None:
    report = scenario_report(tmp_path)
    md, html = render_markdown(report), render_html(report)
    # c-pairs: ✓ supported, +10 [9, 11], Holm p 0.003, untestable printed numbers, 3 seeds needed of 3
    row = next(ln for ln in md.splitlines() if ln.startswith("| E above D"))
    for text in (
        "**✓ supported**",
        "E − D (Norm): +10 [9, 11]",
        "| 0.003 |",
        "– untestable (no printed spread or a single run)",
        "needs ≥ 3 seeds per arm (has 3)",
        "count on the means: ✓ reproduced",
    ):
        assert text in row, text
    row = next(ln for ln in md.splitlines() if ln.startswith("| A beats B"))
    assert "✓ supported by its printed numbers" in row and "P(count >= 2) = 1.00" in row
    # the smoke-only claim: no verdict, its smoke statistics labelled as such, power from the printed spread
    row = next(ln for ln in md.splitlines() if ln.startswith("| C is better"))
    assert (
        "**– no verdict** — smoke runs only" in row
        and "*smoke runs (digits · 1 epoch), not evidence:*" in row
    )
    assert "needs ≥ 2 seeds per arm (has 0 under the published protocol)" in row  # 60 ± 0.0 vs 30 ± 0.0
    # each claim's comparisons fold out (Markdown <details>, a row under the claim on the page)
    assert "<details><summary>c-pairs: 1 comparison</summary>" in md
    assert "| E / Norm > D / Norm | E − D (Norm) (claimed > 0) | paired, 3 seeds | +10 [9, 11] |" in md
    assert '<details id="cmp-c-greater"><summary>2 comparisons of c-greater</summary>' in html
    claims = html[html.index('id="claims-table"') : html.index('<h2 id="summary">')]
    for label in ("verdict", "interval(s)", "Holm p", "published support", "power"):
        assert claims.count(f'data-label="{label}"') >= 4, label
    assert 'class="claim-row stat-supported" id="claim-c-pairs"' in claims
    assert 'class="claim-row stat-no-verdict" id="claim-c-smoke"' in claims
    assert "needs ≥ 3 seeds per arm (has 3)" in claims and "E − D (Norm): +10 [9, 11]" in claims
    # the summary counts claims by statistical verdict too
    assert "**Claims by the seed-level statistics: ✓ 2 supported, ✗ 0 contradicted, ? 1 inconclusive**" in md
    assert '<div class="big">✓ 2 · ✗ 0 · ? 1</div>' in html


def test_cells_show_their_95_interval_beside_the_2_sigma_rule(tmp_path: Path) -> None:
    report = scenario_report(tmp_path)
    t1 = report.tables[0]
    a = t1.cell("Central", "A")  # 54, 55, 56 against the printed 50 ± 1: outside 2σ and outside the interval
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert (a.interval.low, a.interval.high) == pytest.approx((55 - half, 55 + half))
    assert a.interval.contains_published is False
    assert t1.cell("Test Set", "A").interval.contains_published is True  # 79, 80, 81 against 80
    assert t1.cell("Test Set", "C").interval.reason == "no data"  # smoke runs only: no interval
    f = t1.spec.number_format
    lo, hi = format(55 - half, f), format(55 + half, f)
    md = render_markdown(report)
    assert f"Δ = +3.5σ<br>95 % CI [{lo}, {hi}], paper outside" in md
    out = tmp_path / "page"
    write_report(report, out)
    html = (out / "index.html").read_text()
    cell = html[html.index('id="table_t1-r1-c0"') :]
    cell = cell[: cell.index("</td>")]
    assert "3 seeds · 95 % CI</summary>" in cell
    assert (
        f"95 % interval of the mean (Student t, 3 seeds): [{lo}, {hi}]; the published 50.0 lies outside"
        in cell
    )
    csv = pd.read_csv(out / "tables" / "table_t1.csv")
    row = csv[(csv["row"] == "Central") & (csv["column"] == "A")].iloc[0]
    assert row["ci95_low"] == pytest.approx(55 - half, abs=1e-4) and not row["published_in_ci95"]


def test_interrupted_and_requeued_runs_have_their_own_section_never_failures(tmp_path: Path) -> None:
    report = scenario_report(tmp_path, extra=[requeued_record("exp_e", 3, FR, status="interrupted")])
    got = sorted((r.name, r.seed, r.status, r.stints, r.wall_time_s) for r in report.incomplete)
    assert got == [("exp_b", 2, "requeued", 2, 5400.0), ("exp_e", 3, "interrupted", 2, 5400.0)]
    assert [r.name for r in report.failed] == ["exp_c"]  # the one real failure
    s = report.summary()
    assert (s["records_failed"], s["records_incomplete"]) == (1, 2)
    t1 = report.tables[0]
    assert (t1.counts()["failed"], t1.counts()["incomplete"]) == (1, 1)  # C seed 2 failed, B seed 2 requeued
    assert t1.cell("Test Set", "B").values == {0: 69.5, 1: 70.5}  # the requeued seed 2 is in no cell
    assert all(r.failure == "killed by SIGTERM during training: epoch 3 of 350" for r in report.incomplete)
    md = render_markdown(report)
    sec = md[md.index("### Interrupted or requeued runs — resume when relaunched") :]
    assert "- exp_b seed 2 [k1]: **requeued** after 2 stints, 1.50 h — killed by SIGTERM" in sec
    assert "- exp_e seed 3 [k1]: **interrupted** after 2 stints, 1.50 h" in sec
    assert "1 failed, 2 interrupted or requeued (they resume when relaunched)" in md
    out = tmp_path / "page"
    write_report(report, out)
    html = (out / "index.html").read_text()
    sec = html[html.index('<h3 id="incomplete">') : html.index('<h3 id="unreadable">')]
    assert "Interrupted or requeued runs — resume when relaunched (2)" in sec
    assert sec.count(">record</a>") == 2 and "exp_c" not in sec
    fails = html[html.index('<h3 id="failed">') : html.index('<h3 id="incomplete">')]
    assert "exp_b" not in fails and "exp_e" not in fails


# --------------------------------------------------------------------------- a real table, synthetic runs


def _synthetic_table_2_4(root: Path, smoke: bool) -> None:
    """SYNTHETIC records of Table 2.4 that carry its published protocol's settings (CIFAR-10, 350 epochs,
    the whole test set, every occlusion): 3 seeds per column, each value drawn from the printed mean ±
    std (``default_rng(7)``); with ``smoke``, digits runs under another key beside them."""
    spec = load_spec("2.4")
    paper = load_paper(spec).set_index(["row", "column"])
    rng = np.random.default_rng(7)
    store = RecordStore(root)
    for col in spec.columns:
        for seed in (0, 1, 2):
            metrics = {}
            for row in spec.rows:
                p = paper.loc[(row.label, col.label)]
                metrics[str(row.metric)] = float(p["mean"] + max(p["std"], 0.05) * rng.standard_normal())
            store.write(record(col.experiment, seed, spec.protocol, metrics))
            if smoke:
                bad = {k: 10.0 + seed for k in metrics}
                store.write(
                    record(col.experiment, seed, spec.protocol, bad, key="kdigits", smoke=DIGITS_SMOKE)
                )


@pytest.mark.parametrize("smoke", [False, True])
def test_a_real_table_from_runs_under_its_protocol_shows_every_claim_judged(
    tmp_path: Path, smoke: bool
) -> None:
    _synthetic_table_2_4(tmp_path / "runs", smoke)
    spec = load_spec("2.4")
    claims = [c for c in load_claims() if c.table == "2.4"]
    opts = StatsOptions(n_resamples=2000)  # a faster bootstrap; the wiring does not depend on it
    report = build_report(
        [spec],
        load_records(tmp_path / "runs"),
        claims=claims,
        results_dir=str(tmp_path / "runs"),
        stats_options=opts,
    )
    t = report.tables[0]
    assert len(t.protocol_runs) == 15 and len(t.smoke_runs) == (15 if smoke else 0)
    # the same judgement as the statistics' own entry point on the published-protocol cells
    for row, direct in zip(report.claims, judge_table(t.result, claims, t.paper, opts), strict=True):
        _same(row.stats, direct)
        assert row.smoke_stats is None
    md, html = render_markdown(report), render_html(report)
    for row in report.claims:
        v = claim_view(row)
        assert row.stat_verdict in STAT_VERDICTS[:3]
        assert v["intervals"] != "–" and v["p_holm"] != "–" and "printed numbers" in v["published"]
        assert v["power"].startswith(("needs ≥", "cannot say"))
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {row.claim.text}"))
        for text in (
            f"**{v['glyph']} {v['verdict']}**",
            v["intervals"],
            v["p_holm"],
            v["published"],
            v["power"],
        ):
            assert text in line, text
        assert f'id="claim-{row.claim.id}"' in html and f'id="cmp-{row.claim.id}"' in html
        assert len(v["comparisons"]) == 36  # 6 occlusions × winners {CG, CP} × {Baseline, UG, UP}

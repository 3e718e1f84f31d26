"""The reproduction report page, the table figures and the sources' figures (issue 14).

The page is rendered from a hand-made record set for three small tables whose every summary
number is worked out in the comments below; the HTML is parsed (every ``<img>`` resolves to a
file, every table has its section). The figure kinds follow from the specs' shapes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from bioreg.results.aggregate import load_records
from bioreg.results.compare import Claim, compare_table, load_claims
from bioreg.results.figures import (
    ewma,
    fig_occlusions,
    fig_test_loss,
    figure_kind,
    loss_histories,
    occlusion_image,
    plot_table,
)
from bioreg.results.records import RecordStore
from bioreg.results.report import NO_RUNS, collect, render_html, summary_counts, write_report
from bioreg.results.tables import all_specs, build_table, spec_from_dict

# --------------------------------------------------------------------------- the synthetic tables

T1 = {  # Dutta's layout: metrics are rows, experiments columns (-> bars); printed std per cell
    "id": "t1", "title": "two metrics x three models", "paper": "t1.csv", "seeds": [0, 1, 2],
    "rows": [{"label": "Test Set", "metric": "summary.test_acc"},
             {"label": "Central", "metric": "summary.occlusion_acc.central"}],
    "columns": [{"label": "A", "experiment": "exp_a"}, {"label": "B", "experiment": "exp_b"},
                {"label": "C", "experiment": "exp_c"}],
}
T1_PAPER = ("table,row,column,mean,std\n"
            "t1,Test Set,A,80.0,1.0\nt1,Test Set,B,70.0,1.0\nt1,Test Set,C,60.0,0.0\n"
            "t1,Central,A,50.0,1.0\nt1,Central,B,40.0,2.0\nt1,Central,C,30.0,0.0\n")
T2 = {  # Singh's layout: experiments are rows, a metric column (-> panels); no printed std
    "id": "t2", "title": "one metric", "paper": "t2.csv", "seeds": [0, 1, 2],
    "rows": [{"label": "A", "experiment": "exp_a"}, {"label": "D", "experiment": "exp_d"}],
    "columns": [{"label": "Norm", "metric": "extra.fr.value"}],
}
T2_PAPER = "table,row,column,mean,std\nt2,A,Norm,10.0,\nt2,D,Norm,20.0,\n"
T3 = {"id": "t3", "title": "nobody ran this", "seeds": [0, 1, 2],  # no records at all
      "rows": [{"label": "Z", "experiment": "exp_z"}],
      "columns": [{"label": "acc", "metric": "summary.test_acc"}]}

CLAIMS = [
    # A > B on both rows: reproduced (80 > 70, 55 > 43); on the paper's numbers 2 too
    Claim(id="c-greater", table="t1", text="A beats B", source="here", check="count_greater", claimed=2,
          lines=("Test Set", "Central"), greater="A", than="B"),
    # needs column C, which has no runs: not enough data
    Claim(id="c-best", table="t1", text="C is best", source="here", check="count_best", claimed=1,
          lines=("Test Set",), winners=("C",)),
    # A (10) > D (25) is false: not reproduced
    Claim(id="c-pairs", table="t2", text="A above D", source="here", check="pairs_greater", claimed=1,
          pairs=((("A", "Norm"), ("D", "Norm")),)),
]


def _rec(name: str, seed: int, **metrics: float) -> dict:
    rec: dict = {"name": name, "seed": seed, "config_key": "k1", "status": "completed"}
    for path, v in metrics.items():
        d = rec
        *head, last = path.split("__")
        for k in head:
            d = d.setdefault(k, {})
        d[last] = v
    return rec


def write_records(root: Path) -> None:
    store = RecordStore(root)
    for s, off in enumerate([-1.0, 0.0, 1.0]):
        # T1 column A: test 80 ± 1 (paper 80 ± 1: diff 0, ok); central 55 ± 1 vs 50 ± 1:
        # diff 5 > 2·sqrt(1 + 1) = 2.83 -> FLAG. T2 row A: 10 ± 1 vs 10 (no printed std): ok
        store.write(_rec("exp_a", s, summary__test_acc=80 + off, summary__occlusion_acc__central=55 + off,
                         extra__fr__value=10 + off))
    for s, off in enumerate([-0.5, 0.5]):
        # T1 column B, seeds 0 and 1: test 70 ± 0.71 vs 70 ± 1 -> ok; central 43 ± 0.71 vs 40 ± 2:
        # diff 3 < 2·sqrt(0.5 + 4) = 4.24 -> ok
        store.write(_rec("exp_b", s, summary__test_acc=70 + off, summary__occlusion_acc__central=43 + off))
    # T2 row D: one seed with a value and no printed std -> a value, but no verdict; seed 1 ran
    # without recording the number (a run that lacks an evaluator): the cell lacks a value
    store.write(_rec("exp_d", 0, extra__fr__value=25.0))
    store.write(_rec("exp_d", 1, summary__test_acc=1.0))
    # a failed run of column C and a truncated file: listed, never averaged
    store.write(
        {"name": "exp_c", "seed": 2, "config_key": "k1", "status": "failed", "error": "RuntimeError: boom"})
    bad = root / "exp_x" / "k1" / "seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"name": "exp_x", "seed": 0, "stat')


# hand-computed from the comments above:
#   cells 6 + 2 + 1 = 9; with data 4 (T1: A, B) + 2 (T2) = 6; checkable 4 + 1 (D has no sigma) = 5;
#   within 2 sigma 3 (T1: all but A/Central) + 1 (T2: A) = 4; flagged 1.
#   (experiment, seed) pairs asked: {a, b, c} x 3 (T1) + d x 3 (T2; a is shared) + z x 3 (T3) = 15;
#   present: a 3 + b 2 + d 2 = 7. Claims: 3, checkable 2, reproduced 1.
#   Records: 3 + 2 + 2 completed, 1 failed, 1 unreadable = 9.
EXPECTED = {"cells": 9, "with_data": 6, "checkable": 5, "within": 4, "flagged": 1, "seeds_asked": 15,
            "seeds_present": 7, "claims": 3, "claims_checkable": 2, "claims_reproduced": 1, "tables": 3,
            "tables_with_runs": 2, "records": 9, "records_completed": 7, "records_failed": 1,
            "records_unreadable": 1}


@pytest.fixture
def report_data(tmp_path: Path):
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "t1.csv").write_text(T1_PAPER)
    (paper / "t2.csv").write_text(T2_PAPER)
    write_records(tmp_path / "runs")
    specs = [spec_from_dict(d) for d in (T1, T2, T3)]
    records = load_records(tmp_path / "runs")
    return collect(specs, records, claims=CLAIMS, results_dir=str(tmp_path / "runs"), paper_dir=paper)


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.sections: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(str(a.get("src")))
        if tag == "section" and "table-section" in str(a.get("class", "")):
            self.sections.append(str(a.get("id")))
        if a.get("id"):
            self.ids.add(str(a["id"]))


# --------------------------------------------------------------------------- the page


def test_summary_counts_match_the_hand_computed_numbers(report_data) -> None:
    assert summary_counts(report_data) == EXPECTED
    per = {s.spec.id: s.counts() for s in report_data.sections}
    assert (per["t1"]["within"], per["t1"]["flagged"], per["t1"]["seeds_present"]) == (3, 1, 5)
    assert (per["t2"]["with_data"], per["t2"]["checkable"], per["t2"]["seeds_present"]) == (2, 1, 5)
    # D: 1 value, 2 runs
    assert (per["t1"]["lacking"], per["t2"]["lacking"], per["t3"]["lacking"]) == (0, 1, 0)
    assert report_data.sections[0].missing() == {"exp_b": [2], "exp_c": [0, 1, 2]}
    statuses = {o.claim.id: o.status for s in report_data.sections for o in s.claims}
    assert statuses == {"c-greater": "reproduced", "c-best": "not enough data", "c-pairs": "not reproduced"}


def test_page_renders_with_summary_sections_figures_and_the_unreadable_record(report_data,
                                                                              tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = write_report(report_data, out, figures_dir=tmp_path / "no_figures_yet")
    html = (out / "index.html").read_text()
    md = (out / "index.md").read_text()
    assert written["paths"]["html"] == out / "index.html"

    page = _Page()
    page.feed(html)
    # every table has its section, in order, and every image is a file beside the page
    assert page.sections == ["table_t1", "table_t2", "table_t3"]
    assert page.imgs, "no figure on the page"
    for src in page.imgs:
        assert not src.startswith(("/", "http", "data:")), src
        assert (out / src).is_file(), src
    # a figure per table with records, none for the table without
    assert (out / "figures" / "table_t1.png").is_file() and (out / "figures" / "table_t2.png").is_file()
    assert not (out / "figures" / "table_t3.png").exists()
    assert {"figures/table_t1.png", "figures/table_t2.png"} <= set(page.imgs)

    # the summary comes first and carries the hand-computed numbers
    assert html.index('id="summary"') < html.index('id="table_t1"')
    for card, text in (("sum-cells", "4 / 5"), ("sum-claims", "1 / 2"), ("sum-seeds", "7 / 15")):
        assert re.search(rf'id="{card}"><div class="big">{re.escape(text)}</div>', html), card
    assert "Cells within 2σ of the published value: 4 / 5" in md
    assert "Claims reproduced: 1 / 2" in md and "Seeds present: 7 / 15" in md

    # the empty table says so and names the command; the partial one names what is missing
    t3 = html[html.index('id="table_t3"'):]
    assert NO_RUNS in t3 and "make reproduce-table-t3" in t3
    assert "exp_b seeds 2" in html and "make reproduce-table-t1" in html
    assert "1 cell(s) lack a number" in html
    assert f"**{NO_RUNS}** — `make reproduce-table-t3" in md
    # unreadable and failed records are listed, not fatal
    assert "exp_x/k1/seed0.json" in html and "exp_x/k1/seed0.json" in md
    assert "RuntimeError: boom" in html
    # cells: the verdict colours come from the comparison (one red cell in t1)
    t1 = html[html.index('id="table_t1"'):html.index('id="table_t2"')]
    assert t1.count("#fbdada") == 1 and "Δ = +3.5σ" in t1  # central, A: 5 / sqrt(2)
    # the sources' figures that are absent are listed with the command that builds them
    assert "Fig. 2.4" in html and "make figures" in html


def test_every_real_table_renders_without_records(tmp_path: Path) -> None:
    data = collect(all_specs(), load_records(tmp_path / "none"), claims=load_claims(),
                   results_dir="results/runs",
                   data="digits")
    html = render_html(data)
    page = _Page()
    page.feed(html)
    assert page.sections == [s.stem for s in all_specs()]
    assert html.count(NO_RUNS) >= len(all_specs())
    assert 'make reproduce-table-2.3 ARGS="data=digits"' in html.replace("&#34;", '"')  # default RESULTS_DIR
    assert summary_counts(data)["seeds_present"] == 0


# --------------------------------------------------------------------------- figure kinds


def _stats_spec(figure=None) -> dict:
    d = {"id": "s32", "title": "correlation statistics", "seeds": [0, 1],
         "rows": [{"label": f"Layer {k} {s}", "metric": f"extra.c.l{k}.{s.strip('.').lower()}"}
                  for k in (3, 5) for s in ("Max.", "Min.", "Mean", "Std.")],
         "columns": [{"label": "Vanilla", "experiment": "exp_a"}, {"label": "Mixup", "experiment": "exp_b"}]}
    if figure is not None:
        d["figure"] = figure
    return d


def _sweep_spec() -> dict:
    return {"id": "sw", "title": "noise sweep", "seeds": [0, 1],
            "rows": [{"label": "h=1, alpha=1", "experiment": "exp_a"},
                     {"label": "h=2, alpha=1", "experiment": "exp_b"}],
            "columns": [{"label": f"sigma^2={v}", "metric": f"extra.noise.acc.{i}"}
                        for i, v in enumerate(["0", "1e-4", "5e-4", "1e-3", "5e-3", "1e-2"])]}


def test_figure_kind_follows_the_shape_and_the_spec_can_choose() -> None:
    assert figure_kind(spec_from_dict(T1)) == "bars"
    assert figure_kind(spec_from_dict(T2)) == "panels"
    assert figure_kind(spec_from_dict(_sweep_spec())) == "curves"
    assert figure_kind(spec_from_dict(_stats_spec())) == "grouped_stats"
    assert figure_kind(spec_from_dict({**T1, "figure": "panels"})) == "panels"
    assert figure_kind(spec_from_dict({**T1, "figure": {"kind": "none"}})) == "none"
    # the real tables: Dutta's are bars, Singh's panels, push-pull Table 4 curves
    kinds = {s.id: figure_kind(s) for s in all_specs()}
    assert kinds["2.5"] == "bars" and kinds["n3.1"] == "panels" and kinds["pp4"] == "curves"
    with pytest.raises(ValueError, match="valid: auto, bars, panels, curves, grouped_stats, none"):
        spec_from_dict({**T1, "figure": "pie"})
    with pytest.raises(ValueError, match="unknown figure option"):
        spec_from_dict({**T1, "figure": {"kind": "bars", "colour": "red"}})
    with pytest.raises(ValueError, match="named groups"):
        spec_from_dict(_stats_spec({"kind": "grouped_stats", "group_pattern": "(.*) (.*)"}))


def test_every_figure_kind_draws_from_records(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "runs")
    for name, base in (("exp_a", 0.1), ("exp_b", 0.2)):
        for s in (0, 1):
            rec = _rec(name, s, summary__test_acc=80.0 + s)
            rec["extra"] = {
                "c": {f"l{k}": {st: base + 0.01 * s for st in ("max", "min", "mean", "std")} for k in (3, 5)},
                "noise": {"acc": [90.0 - 5 * i + s for i in range(6)]}}
            store.write(rec)
    records = load_records(tmp_path / "runs")
    for d in (_stats_spec(), _sweep_spec(), T1, {**T1, "figure": "none"}):
        spec = spec_from_dict(d)
        res = build_table(spec, records)
        paths = plot_table(res, compare_table(res, None), tmp_path / "figs", formats=("png",))
        if spec.figure.get("kind") == "none":
            assert paths == []
        else:
            assert paths == [tmp_path / "figs" / f"{spec.stem}.png"] and paths[0].stat().st_size > 5000


# --------------------------------------------------------------------------- the sources' figures


def test_fig_2_4_uses_a_digits_image_when_cifar10_is_absent(tmp_path: Path) -> None:
    from bioreg.data.digits import load_digits_tensor
    from bioreg.data.errors import DataError

    img, caption = occlusion_image("auto", tmp_path / "no_cifar", index=5)
    x, y = load_digits_tensor()
    assert img.shape == (3, 32, 32) and bool((img == x[5]).all()) and f"'{int(y[5])}'" in caption
    with pytest.raises(DataError):
        occlusion_image("cifar10", tmp_path / "no_cifar")
    with pytest.raises(ValueError, match="valid: auto, cifar10, digits"):
        occlusion_image("imagenet")
    paths = fig_occlusions(img, tmp_path, caption, formats=("png",))
    assert paths == [tmp_path / "fig_2_4.png"] and paths[0].stat().st_size > 5000


def test_ewma_by_hand() -> None:
    assert ewma([1.0, 3.0, 3.0], 0.5).tolist() == [1.0, 2.0, 2.5]
    assert ewma([4.0, 2.0], 0.0).tolist() == [4.0, 2.0]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ewma([1.0], 1.0)


def test_fig_3_11_reads_the_runs_csv_logs(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "runs")
    for seed, scale in ((0, 1.0), (1, 3.0)):
        run_dir = tmp_path / "out" / f"job{seed}"
        (run_dir / "csv").mkdir(parents=True)
        # Lightning's CSVLogger: one row per logging call, NaN where a column was not logged
        pd.DataFrame({"epoch": [0, 0, 1, 1], "step": [3, 3, 7, 7], "train/loss": [2.0, None, 1.5, None],
                      "val/loss": [None, 2.0 * scale, None, 1.0 * scale]}).to_csv(
                          run_dir / "csv" / "metrics.csv",
                          index=False)
        store.write({**_rec("exp_a", seed), "run_dir": str(run_dir)})
    store.write(_rec("exp_b", 0))  # no run_dir: reported, not fatal
    hist, missing = loss_histories(load_records(tmp_path / "runs"), ["exp_a", "exp_b"], [0, 1])
    assert list(hist) == ["exp_a"]
    assert hist["exp_a"].mean(axis=1).tolist() == [4.0, 2.0]  # (2 + 6) / 2, (1 + 3) / 2
    assert len(missing) == 1 and "exp_b seed 0" in missing[0] and "run directory" in missing[0]
    paths = fig_test_loss(hist, {"exp_a": "Model A"}, tmp_path / "figs", formats=("png",))
    assert paths == [tmp_path / "figs" / "fig_3_11.png"]


@pytest.mark.slow
def test_make_figures_and_make_report_scripts(tmp_path: Path, capsys) -> None:
    """The two scripts ``make figures`` / ``make report`` call, on records of one real table (2.3)."""
    import importlib.util

    def script(name: str):
        spec = importlib.util.spec_from_file_location(name,
                                                      Path(__file__).parents[1] / "scripts" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    store = RecordStore(tmp_path / "runs")
    for s in (0, 1):
        rec = _rec("allconvnet_baseline", s, summary__test_acc=50.0 + s)
        rec["config"] = {"data": {"_target_": "bioreg.data.digits.DigitsDataModule"}}
        store.write(rec)
    (tmp_path / "runs" / "junk" / "k").mkdir(parents=True)
    (tmp_path / "runs" / "junk" / "k" / "seed0.json").write_text("{")
    figs, out = tmp_path / "figures", tmp_path / "report"
    assert script("make_figures").main(["--results-dir", str(tmp_path / "runs"), "--out-dir", str(figs),
                                        "--data-dir", str(tmp_path / "data"), "--formats", "png",
                                        "--data", "digits"]) == 0
    text = capsys.readouterr().out
    assert "table figures: " in text and "2.3" in text
    assert re.search(r"fig_2_4\s+built \(digits image 0", text)
    assert re.search(r"fig_3_11\s+skipped: ", text)
    assert (figs / "tables" / "table_2_3.png").is_file() and (figs / "fig_2_4.png").is_file()
    assert script("make_report").main(["--results-dir", str(tmp_path / "runs"), "--out-dir", str(out),
                                       "--figures-dir", str(figs), "--data", "digits"]) == 0
    html = (out / "index.html").read_text()
    assert re.search(r'make reproduce-table-2\.3 RESULTS_DIR=\S+ ARGS="data=digits"',
                     html.replace("&#34;", '"'))
    page = _Page()
    page.feed(html)
    assert "figures/fig_2_4.png" in page.imgs and "figures/table_2_3.png" in page.imgs
    assert all((out / src).is_file() for src in page.imgs)
    assert "junk/k/seed0.json" in html  # listed although the --data filter cannot place it

"""Every thesis table renders in its printed layout from synthetic records; comparison and claims.

Layouts are checked against the transcribed tables in results/paper/ (row and column labels in
printed order); cell values against numbers computed here from the synthetic records.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bioreg.results.aggregate import Metric, load_records
from bioreg.results.compare import (
    FEW_SEEDS,
    FLAG_K,
    NO_DATA,
    NO_PUBLISHED,
    OUTSIDE,
    WITHIN,
    compare_table,
    evaluate_claim,
    load_claims,
    printed_resolution,
)
from bioreg.results.records import PROTOCOLS, RecordStore
from bioreg.results.report import build_report
from bioreg.results.report_page import render_markdown as render_report_markdown
from bioreg.results.tables import (
    PAPER_DIR,
    all_specs,
    build_table,
    load_paper,
    load_spec,
    render_csv,
    render_latex,
    render_markdown,
    spec_from_dict,
    table_ids,
    write_table,
)
from helpers.report_records import record as protocol_record

ALL_IDS = ["2.3", "2.4", "2.5", "2.6", "3.2", "4.1", "4.2", "4.3", "4.4", "4.5",
           "n3.1", "n3.2", "n3.3", "n3.4", "n3.5", "n3.6", "pp2", "pp3", "pp4", "pp5"]
# every table has its printed numbers under results/paper/ (push-pull Tables 4 and 5 since issue 12)
PAPER_IDS = ALL_IDS
SEEDS = (0, 1, 2, 3, 4)
SEED_OFFSETS = np.array([0.0, 0.4, -0.3, 0.9, -0.5])  # value of seed k = base + SEED_OFFSETS[k]


def leaves(m: Metric) -> list[str]:
    return [m.path] if m.op == "path" else [p for a in m.args for p in leaves(a)]


def set_path(d: dict, path: str, value: float) -> None:
    *head, last = path.split(".")
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value


def base_value(exp_i: int, path: str) -> float:
    """A distinct, path-dependent base number per (experiment, leaf path)."""
    return 20.0 + 3.0 * exp_i + (sum(map(ord, path)) % 97) / 10.0


def synthetic_records(spec, root: Path) -> None:
    store = RecordStore(root)
    metrics = [a.metric for a in (*spec.rows, *spec.columns) if a.metric is not None]
    metrics += [m for *_, m in spec.overrides if m is not None]  # explicit `cells` entries (Table 3.2)
    paths = sorted({p for m in metrics for p in leaves(m)})
    protocols = spec.readings()  # the authors'-protocol rows' runs say so in their records
    for i, exp in enumerate(spec.experiments):
        for s in SEEDS:
            rec = {"name": exp, "seed": s, "config_key": "abc", "status": "completed",
                   "protocol": dict(PROTOCOLS[protocols[exp]])}
            for p in paths:
                set_path(rec, p, base_value(i, p) + SEED_OFFSETS[s])
            store.write(rec)


def paper_layout(spec) -> tuple[list[str], list[str]]:
    paper = load_paper(spec)
    rows = list(dict.fromkeys(paper["row"]))
    cols = list(dict.fromkeys(paper["column"]))
    return rows, cols


def test_every_table_has_a_spec() -> None:
    assert table_ids() == ALL_IDS


@pytest.mark.parametrize("tid", PAPER_IDS)
def test_table_renders_in_printed_layout(tid: str, tmp_path: Path) -> None:
    spec = load_spec(tid)
    synthetic_records(spec, tmp_path / "runs")
    res = build_table(spec, load_records(tmp_path / "runs"))
    rows = [r.label for r in spec.rows]
    cols = [c.label for c in spec.columns]

    # layout = the transcribed table (push-pull: its ResNet rows/columns, in printed order); ablation
    # rows/columns (compare_to, not printed) come after the printed ones
    p_rows, p_cols = paper_layout(spec)
    printed_rows = [r.label for r in spec.rows if not r.compare_to]
    printed_cols = [c.label for c in spec.columns if not c.compare_to]
    assert rows[:len(printed_rows)] == printed_rows and cols[:len(printed_cols)] == printed_cols
    if tid in ("pp2", "pp3"):
        assert printed_rows == [r for r in p_rows if r in rows]
        assert printed_cols == [c for c in p_cols if c in cols]
        assert all(("resnet" in x) for x in (rows if tid == "pp3" else cols))
        assert len(printed_rows if tid == "pp3" else printed_cols) == 8
    elif tid == "pp5":  # the printed ResNet-20/56 rows in printed order, plus ResNet-32/44 and mce/rce
        assert [r for r in printed_rows if r in p_rows] == p_rows and cols[:2] == p_cols
    else:
        assert (printed_rows, printed_cols) == (p_rows, p_cols)

    # every cell has all five seeds; plain-path cells have the expected mean and std
    assert (res.cells["n"] == 5).all() and not res.notes
    exp_index = {e: i for i, e in enumerate(spec.experiments)}
    std5 = float(np.std(SEED_OFFSETS, ddof=1))
    for _, c in res.cells.iterrows():
        r = next(a for a in spec.rows if a.label == c["row"])
        col = next(a for a in spec.columns if a.label == c["column"])
        exp, metric = spec.cell(r, col)  # the axes, or the spec's explicit `cells` entry
        if metric.op == "path":
            assert c["mean"] == pytest.approx(base_value(exp_index[exp], metric.path) + SEED_OFFSETS.mean())
            assert c["std"] == pytest.approx(std5)
        elif metric.op == "error":
            assert c["mean"] == pytest.approx(100 - base_value(exp_index[exp], metric.args[0].path)
                                              - SEED_OFFSETS.mean())
            assert c["std"] == pytest.approx(std5)

    # Markdown: header in column order, one line per row in row order
    md = render_markdown(res)
    table_lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert [h.strip() for h in table_lines[0].strip("|").split("|")][1:] == [c.replace("|", r"\|")
                                                                             for c in cols]
    assert [ln.split("|")[1].strip() for ln in table_lines[2:]] == rows
    assert all(ln.count(" ± ") == len(cols) for ln in table_lines[2:])

    # LaTeX: booktabs table, escaped labels, one \\ line per row plus the header
    tex = render_latex(res)
    assert "\\toprule" in tex and "\\bottomrule" in tex and tex.count("$\\pm$") >= len(rows) * len(cols)
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0]
    assert body.count("\\\\") == len(rows)
    assert "%)" not in tex.replace("\\%)", "")  # every % escaped

    # CSV: tidy, paper-like header, printed order, numbers round-trip
    df = pd.read_csv(io.StringIO(render_csv(res)), keep_default_na=False, dtype={"row": str, "column": str})
    assert list(df.columns) == ["table", "row", "column", "mean", "std", "n", "n_expected", "seeds"]
    assert list(zip(df["row"], df["column"], strict=True)) == [(r, c) for r in rows for c in cols]
    assert np.allclose(df["mean"].astype(float), res.cells["mean"], rtol=1e-5)


def test_every_table_has_a_paper_csv() -> None:
    for spec in all_specs():
        assert spec.paper and (PAPER_DIR / spec.paper).is_file(), spec.id


PP4_GRID = [(h, a) for h in ("1", "1.5", "2") for a in ("0.5", "1", "1.5")]
TABLE4_VARIANCES = [0.0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2]  # Strisciuglio et al. (2020), Table 4, as printed


def test_pp4_is_the_resnet14_table_at_the_six_printed_noise_variances(tmp_path: Path) -> None:
    """Table 4 of the push-pull paper: ResNet-14 (no push-pull), then ResNet-14-PP per (h, alpha); error (%)
    at sigma^2 in {0, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2}; published numbers beside ours."""
    import yaml

    spec = load_spec("pp4")
    base = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "conf/experiment/resnet_base.yaml").read_text())
    noise = base["eval"]["evaluators"]["noise"]
    assert noise["variances"] == TABLE4_VARIANCES and noise["stds"] is None
    assert [c.label for c in spec.columns] == [f"sigma^2={v:.0e}".replace("e-0", "e-") if v else "sigma^2=0"
                                               for v in TABLE4_VARIANCES]
    assert [str(c.metric) for c in spec.columns] == [f"error(extra.noise.acc.{i})" for i in range(6)]
    printed = [r for r in spec.rows if not r.compare_to]  # the authors'-protocol ablation row follows them
    assert [r.experiment for r in printed] == ["resnet14_baseline"] + [
        f"resnet14_pushpull_h{h.replace('.', '')}_a{float(a):.1f}".replace(".", "") for h, a in PP4_GRID]
    assert [(r.experiment, r.reading) for r in spec.ablations] == [
        ("resnet14_pushpull_h2_a10_authors", "authors")]
    # every experiment is a ResNet-14 with the row's (h, alpha), push-pull only where the row says so
    for i, r in enumerate(printed):
        exp = r.experiment
        cfg = yaml.safe_load(
            (Path(__file__).resolve().parents[1] / f"conf/experiment/{exp}.yaml").read_text())
        assert {"override /model": "resnet14"} in cfg["defaults"] and cfg["name"] == exp
        assert {"override /reg": "none" if i == 0 else ["pushpull"]} in cfg["defaults"]
        if i == 0:
            continue
        h, a = r.label.split("h=")[1].split(", alpha=")
        assert (cfg["reg"]["pushpull"]["scale"], cfg["reg"]["pushpull"]["alpha"]) == (float(h), float(a))
    # the paper cells join every cell of the table
    paper = load_paper(spec)
    assert len(paper) == 60 and set(zip(paper["row"], paper["column"], strict=True)) == {
        (r.label, c.label) for r in printed for c in spec.columns}
    got = paper.set_index(["row", "column"])["mean"]
    assert got[("resnet14", "sigma^2=1e-2")] == pytest.approx(77.46)
    assert got[("resnet14_pp, h=1.5, alpha=1.5", "sigma^2=1e-3")] == pytest.approx(12.82)
    # ours = 100 - accuracy, published printed under each row
    synthetic_records(spec, tmp_path / "runs")
    res = build_table(spec, load_records(tmp_path / "runs"))
    assert (res.cells["n"] == 5).all() and not res.notes
    md = render_markdown(res, paper)
    body = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("|")][2:]
    assert body == [x for r in printed for x in (r.label, f"{r.label} (published)")] + [
        r.label for r in spec.ablations]
    line = next(ln for ln in md.splitlines() if ln.startswith("| resnet14 (published) |"))
    assert [c.strip() for c in line.strip("|").split("|")][1:] == ["4.09", "5.18", "10.47", "18.76", "59.53",
                                                                  "77.46"]
    report = build_report([spec], load_records(tmp_path / "runs"), claims=[], results_dir="x")
    assert report.tables[0].cell("resnet14", "sigma^2=1e-2").published == "77.46"
    assert report.tables[0].counts()["cells"] == 66  # 60 printed cells + the ablation row's 6


def test_pp5_rows_of_the_printed_table_and_their_numbers(tmp_path: Path) -> None:
    spec = load_spec("pp5")
    rows = [r.label for r in spec.rows if not r.compare_to]  # the authors'-protocol ablation row follows
    assert rows == [f"resnet{d}{s}" for d in (20, 32, 44, 56) for s in ("", "_pp", "_pp_learned_alpha")]
    pp3 = {r.label: r.experiment for r in load_spec("pp3").rows}
    assert all(r.experiment == pp3[r.label] for r in spec.rows if r.label in pp3)
    assert all(r.experiment.endswith("_pushpull_learned_alpha") for r in spec.rows[2:12:3])
    paper = load_paper(spec)
    p_rows, p_cols = paper_layout(spec)
    assert [r for r in rows if r in p_rows] == p_rows == [f"resnet{d}{s}" for d in (20, 56)
                                                          for s in ("", "_pp", "_pp_learned_alpha")]
    assert [c.label for c in spec.columns][:2] == p_cols == ["e_clean", "e_corr"]
    synthetic_records(spec, tmp_path / "runs")
    res = build_table(spec, load_records(tmp_path / "runs"))
    cmp_ = compare_table(res, paper).set_index(["row", "column"])
    assert cmp_.loc[("resnet20_pp_learned_alpha", "e_corr"), "thesis_mean"] == pytest.approx(31.09)
    assert cmp_.loc[("resnet32_pp", "e_clean"), "verdict"] == NO_PUBLISHED
    assert cmp_.loc[("resnet56", "mce"), "verdict"] == NO_PUBLISHED


def test_paper_index_may_name_several_columns_and_axes_map_paper_labels(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("model,h,v1\nnet,,1.5\nnet_pp,2,2.5\n")
    spec = spec_from_dict({"id": "x", "paper": "t.csv", "paper_format": "wide", "paper_index": ["model", "h"],
                           "rows": [{"label": "Net", "experiment": "a", "paper": "net,"},
                                    {"label": "Net-PP", "experiment": "b", "paper": "net_pp,2"}],
                           "columns": [{"label": "V", "metric": "m", "paper": "v1"}]})
    p = load_paper(spec, paper_dir=tmp_path)
    assert list(zip(p["row"], p["column"], p["mean"], strict=True)) == [("Net", "V", 1.5),
                                                                        ("Net-PP", "V", 2.5)]
    bad = spec_from_dict({"id": "x", "paper": "t.csv", "paper_format": "wide", "paper_index": ["model", "hh"],
                          "rows": [{"label": "Net", "experiment": "a"}],
                          "columns": [{"label": "V", "metric": "m"}]})
    with pytest.raises(ValueError, match=r"paper_index \['hh'\] is not a column of t.csv"):
        load_paper(bad, paper_dir=tmp_path)


def test_singh_overfitting_is_per_seed_absolute_difference(tmp_path: Path) -> None:
    """Table 3.1's train accuracy is the authors' (the running train-mode accuracy at the selected epoch);
    the eval-mode and last-epoch readings are its ablation columns; overfitting is |train - test| per seed."""
    spec = load_spec("n3.1")
    store = RecordStore(tmp_path)
    train = [96.0, 97.0, 95.0]  # running, selected epoch
    test = [90.0, 98.0, 91.0]  # seed 1 has test > train: |diff| per seed, then the mean
    for s, (tr, te) in enumerate(zip(train, test, strict=True)):
        store.write({"name": "vgg16_baseline", "seed": s, "config_key": "k", "status": "completed",
                     "train": {"running_acc_selected": tr, "running_acc_last": tr - 1, "eval_acc": tr + 2,
                               "acc": 0.5}, "summary": {"test_acc": te}})
    # a record written before the running accuracy was kept: no default cell, but the last-epoch reading
    # (train.acc, a fraction, x 100) and the eval-mode one
    store.write({"name": "vgg16_dropout_48_51", "seed": 0, "config_key": "k", "status": "completed",
                 "train": {"acc": 0.931, "eval_acc": 99.0}, "summary": {"test_acc": 90.0}})
    res = build_table(spec, load_records(tmp_path))
    over = res.stats("Baseline", "Overfitting")
    gaps = [6.0, 1.0, 4.0]
    assert over.mean == pytest.approx(np.mean(gaps)) and over.std == pytest.approx(np.std(gaps, ddof=1))
    assert res.stats("Baseline", "Train Accuracy (%)").mean == pytest.approx(96.0)
    assert res.stats("Baseline", "Train Accuracy, last epoch (%)").mean == pytest.approx(95.0)
    assert res.stats("Baseline", "Train Accuracy, eval mode (%)").mean == pytest.approx(98.0)
    assert res.stats("Baseline", "Overfitting, eval mode").mean == pytest.approx(np.mean([8.0, 1.0, 6.0]))
    d = res.stats("Dropout 48", "Train Accuracy, last epoch (%)")
    assert d.mean == pytest.approx(93.1)
    assert res.stats("Dropout 48", "Overfitting, last epoch").mean == pytest.approx(3.1)
    assert res.stats("Dropout 48", "Train Accuracy (%)").n == 0
    assert any("missing metric: train.running_acc_selected" in n for n in res.notes)


def test_write_table_writes_three_files_atomically(tmp_path: Path) -> None:
    spec = load_spec("2.3")
    res = build_table(spec, load_records(tmp_path / "none"))
    paths = write_table(res, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["table_2_3.csv", "table_2_3.md", "table_2_3.tex"]
    assert not list((tmp_path / "out").glob(".*tmp"))
    assert "| Test Set | – | – | – | – | – |" in paths["md"].read_text()


@pytest.mark.parametrize("bad, match", [
    ({"id": "x", "rows": [{"label": "r", "metric": "a"}], "columns": [{"label": "c", "metric": "b"}]},
     "exactly one of each"),
    ({"id": "x", "rows": [{"label": "r", "experiment": "e"}], "columns": [{"label": "c", "experiment": "f"}]},
     "exactly one of each"),
    ({"id": "x", "rows": [{"label": "r", "metric": "a"}], "columns": [{"label": "c", "experiment": "e"}],
      "paper_format": "long"}, "valid: 'tidy', 'wide'"),
    ({"id": "x", "rows": [{"label": "r", "metric": "a"}], "columns": [{"label": "c", "experiment": "e"}],
      "colour": 1}, "unknown keys"),
    ({"id": "x", "rows": [{"label": "r", "metric": "a"}, {"label": "r", "metric": "b"}],
      "columns": [{"label": "c", "experiment": "e"}]}, "duplicate row labels"),
    ({"id": "x", "rows": [{"label": "r", "metric": "a"}], "columns": [{"label": "c", "experiment": "e"}],
      "number_format": "%d"}, "number_format"),
])
def test_bad_specs_are_rejected_with_reasons(bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        spec_from_dict(bad)


def test_unknown_table_names_the_valid_ids() -> None:
    with pytest.raises(ValueError, match=r"valid: 2\.3, 2\.4"):
        load_spec("9.9")


# ----------------------------------------------------------------------------- comparison and claims


def records_from_paper(spec, root: Path, shift: dict | None = None, skip: set | None = None,
                       spread: float = 0.0) -> None:
    """Five seeds per experiment whose mean is the printed value (+ shift) and whose std is 0 or `spread`;
    the records follow the table's published protocol."""
    shift, skip = shift or {}, skip or set()
    paper = load_paper(spec).set_index(["row", "column"])
    store = RecordStore(root)
    offs = SEED_OFFSETS - SEED_OFFSETS.mean()
    offs = offs / np.std(offs, ddof=1) * spread if spread else offs * 0
    per_exp: dict[str, dict[int, dict]] = {}
    for r in spec.rows:
        for c in spec.columns:
            exp, metric = spec.cell(r, c)
            assert metric.op == "path"
            if (r.label, c.label) in skip:
                continue
            printed = (spec.paper_label(r.label), spec.paper_label(c.label))  # an ablation: its counterpart's
            v = float(paper.loc[printed, "mean"]) + shift.get((r.label, c.label), 0.0)
            for s in SEEDS:
                rec = per_exp.setdefault(exp, {}).setdefault(
                    s, protocol_record(exp, s, spec.protocol, key="k"))
                set_path(rec, metric.path, v + offs[s])
    for seeds in per_exp.values():
        for rec in seeds.values():
            store.write(rec)


def test_compare_flags_beyond_two_combined_sigma(tmp_path: Path) -> None:
    spec = load_spec("2.5")
    # Contrast/Baseline printed 58.6 ± 2.0; reproduction std 1.5 -> sigma = 2.5, 2 sigma = 5.0
    shift = {("Contrast", "Baseline"): 5.2, ("Fog", "Baseline"): 4.8}
    records_from_paper(spec, tmp_path, shift=shift, spread=1.5)
    res = build_table(spec, load_records(tmp_path))
    cmp_ = compare_table(res, load_paper(spec)).set_index(["row", "column"])
    c = cmp_.loc[("Contrast", "Baseline")]
    assert c["diff"] == pytest.approx(5.2) and c["sigma"] == pytest.approx(math.hypot(1.5, 2.0))
    assert c["verdict"] == OUTSIDE
    f = cmp_.loc[("Fog", "Baseline")]  # printed 72.4 ± 1.7: sigma = hypot(1.5, 1.7) = 2.267, 4.8 > 4.53
    assert f["verdict"] == OUTSIDE and FLAG_K * f["sigma"] == pytest.approx(2 * math.hypot(1.5, 1.7))
    # every unshifted cell agrees exactly
    rest = cmp_.drop(index=list(shift))
    assert (rest["verdict"] == WITHIN).all() and np.allclose(rest["diff"].astype(float), 0, atol=1e-9)


def test_compare_sigma_floor_and_no_std(tmp_path: Path) -> None:
    assert printed_resolution("75.8") == pytest.approx(0.05)
    assert printed_resolution("100") == pytest.approx(0.5)
    assert printed_resolution("0.0346") == pytest.approx(0.00005)
    spec = load_spec("2.3")
    # Table 2.3 CP prints std 0.0; three seeds with std 0.01: sigma = the printed resolution (0.05)
    for s, v in enumerate((75.88, 75.89, 75.90)):
        RecordStore(tmp_path).write({"name": "corr_poisson_layer1", "seed": s, "config_key": "k",
                                     "status": "completed", "summary": {"test_acc": v}})
    cmp_ = compare_table(build_table(spec, load_records(tmp_path)), load_paper(spec)).set_index(
        ["row", "column"])
    r = cmp_.loc[("Test Set", "CP")]
    assert r["sigma"] == pytest.approx(0.05) and r["verdict"] == WITHIN  # |0.09| <= 0.1
    assert r["thesis"] == "75.8 ± 0.0"  # printed text, not re-formatted
    assert cmp_.loc[("Test Set", "CG"), "verdict"] == NO_DATA
    # one seed: no verdict and no σ (it used to be σ = 0.05 and a distance of hundreds of σ)
    s6 = load_spec("n3.6")
    RecordStore(tmp_path / "s").write(
        {"name": "vgg16_baseline", "seed": 0, "config_key": "k", "status": "completed",
                                       "extra": {"fisher_rao": {"value": 3.0}}})
    c6 = compare_table(build_table(s6, load_records(tmp_path / "s")), load_paper(s6)).set_index(
        ["row", "column"])
    assert c6.loc[("Baseline", "Fisher-Rao Norm"), "verdict"] == FEW_SEEDS
    assert c6.loc[("Baseline", "Fisher-Rao Norm"), "sigma"] is None


def test_claims_count_on_printed_numbers() -> None:
    claims = {c.id: c for c in load_claims()}
    assert len(claims) >= 8 and {c.table[0] for c in claims.values()} >= {"2", "4", "n", "p"}
    got = {cid: evaluate_claim(c, load_spec(c.table), None, load_paper(load_spec(c.table))).thesis_count
           for cid, c in claims.items()}
    # the printed tables give the counts stated in the text (Table 4.4: 17 strict wins + a tie, text says 18)
    assert got["D2.3-occlusion-best-correlated"] == 5
    assert got["D2.5-cg-best-14of19"] == 14
    assert got["D2.5-cg-beats-baseline-17of19"] == 17
    assert got["D2.5-best-correlated-15of19"] == 15
    assert got["D2.6-best-correlated-14of19"] == 14
    assert got["D4.4-dropblockrandom-beats-dropblock"] == 17
    assert got["S3.6-fisher-rao-dropout-down-max-up"] == 4
    assert got["PP3-pushpull-lower-relative-mce"] == 4


def test_claim_reproduced_not_reproduced_not_enough_data(tmp_path: Path) -> None:
    spec = load_spec("2.5")
    claim = next(c for c in load_claims() if c.id == "D2.5-cg-best-14of19")
    paper = load_paper(spec)
    records_from_paper(spec, tmp_path / "same")
    o = evaluate_claim(claim, spec, build_table(spec, load_records(tmp_path / "same")), paper)
    assert (o.repro_count, o.status, o.partial) == (14, "reproduced", False)
    # CG drops by 3 points on Defocus Blur, Fog and Frost (margins 1.1, 1.1, 2.5): no longer best -> 11 < 14
    down = {(r, "CG"): -3.0 for r in ("Defocus Blur", "Fog", "Frost")}
    records_from_paper(spec, tmp_path / "worse", shift=down)
    o = evaluate_claim(claim, spec, build_table(spec, load_records(tmp_path / "worse")), paper)
    assert (o.repro_count, o.status) == (11, "not reproduced")
    records_from_paper(spec, tmp_path / "gap", skip={("Fog", "UP")})
    o = evaluate_claim(claim, spec, build_table(spec, load_records(tmp_path / "gap")), paper)
    assert o.status == "not enough data" and o.missing == [("Fog", "UP")]


def test_report_has_every_table_and_claim(tmp_path: Path) -> None:
    spec = load_spec("4.1")
    records_from_paper(spec, tmp_path, spread=0.5)
    report = build_report(all_specs(), load_records(tmp_path), claims=load_claims(), results_dir="x")
    text = render_report_markdown(report)
    for tid in ALL_IDS:
        assert f"### Table {tid}: " in text
    tables = {t.id: t.counts() for t in report.tables}
    assert (tables["4.1"]["cells"], tables["4.1"]["with_data"], tables["4.1"]["within"]) == (100, 100, 100)
    assert tables["2.3"]["with_data"] == 0
    claims = {c.claim.id: c.verdict for c in report.claims}
    assert claims["D4.1-dropblockrandom-beats-dropblock"] == "reproduced"
    assert claims["D2.3-occlusion-best-correlated"] == "not enough data"
    assert (PAPER_DIR / "dutta2019_table_4_1.csv").is_file()


def test_bad_claims_name_the_valid_choices() -> None:
    from bioreg.results.compare import Claim

    base = {"id": "c", "table": "2.5", "text": "t", "source": "s", "claimed": 1}
    with pytest.raises(ValueError, match="valid: count_best, count_greater, pairs_greater"):
        Claim(**base, check="count_worst")
    with pytest.raises(ValueError, match="valid: >=, ==, <=, >, <"):
        Claim(**base, check="count_best", op="!=")
    c = Claim(**base, check="count_best", lines=("Fogg",), winners=("CG",))
    with pytest.raises(ValueError, match="'Fogg' is not a row or column label of table 2.5"):
        evaluate_claim(c, load_spec("2.5"), None, load_paper(load_spec("2.5")))


def test_cells_entries_override_one_cell_and_bad_ones_are_rejected() -> None:
    from bioreg.results.tables import spec_from_dict

    base = {"id": "x", "rows": [{"label": "r1", "metric": "a.m"}, {"label": "r2", "metric": "a.n"}],
            "columns": [{"label": "A", "experiment": "e1"}, {"label": "B", "experiment": "e1"}]}
    spec = spec_from_dict({**base, "cells": [{"row": "r2", "column": "B", "metric": "b.n"},
                                             {"row": "r1", "column": "B", "experiment": "e2"}]})
    rows, cols = spec.rows, spec.columns
    assert spec.cell(rows[1], cols[0])[1].path == "a.n"
    assert spec.cell(rows[1], cols[1]) == ("e1", spec.cell(rows[1], cols[1])[1]) and \
        spec.cell(rows[1], cols[1])[1].path == "b.n"
    assert spec.cell(rows[0], cols[1])[0] == "e2" and spec.experiments == ["e1", "e2"]
    with pytest.raises(ValueError, match="names no printed cell"):
        spec_from_dict({**base, "cells": [{"row": "r9", "column": "B", "metric": "b.n"}]})
    with pytest.raises(ValueError, match="needs 'row', 'column' and 'experiment' and/or 'metric'"):
        spec_from_dict({**base, "cells": [{"row": "r1", "column": "B"}]})

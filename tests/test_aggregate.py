"""Aggregation of run records into table cells (src/bioreg/results/aggregate.py), on hand-written records.

Every expected number below is computed by hand or with numpy (ddof=1), never by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bioreg.results.aggregate import (
    cell_stats,
    flatten,
    load_records,
    parse_metric,
    record_metrics,
    select_runs,
)
from bioreg.results.records import RecordStore
from bioreg.results.tables import Axis, TableSpec, build_table, format_cell, render_markdown


def write(store: RecordStore, name: str, seed: int, key: str = "k1", status: str = "completed",
          **sections) -> Path:
    rec = {"name": name, "seed": seed, "config_key": key, "status": status, **sections}
    if status != "completed":
        rec["error"] = "RuntimeError: boom"
    return store.write(rec, overwrite=True)


def test_flatten_keeps_numeric_leaves_only() -> None:
    d = {"a": 1, "b": {"c": 2.5, "d": "text", "e": [1, 2.5, "x", True], "f": True, "g": None, "h": {"48": 3},
                       "i": [{"j": 4}, [5]]}}
    # list items by position: extra.noise.acc.<i> is the accuracy at the i-th noise level
    assert flatten(d) == {"a": 1.0, "b.c": 2.5, "b.e.0": 1.0, "b.e.1": 2.5, "b.h.48": 3.0, "b.i.0.j": 4.0,
                          "b.i.1.0": 5.0}
    rec = {"summary": {"test_acc": 80.0}, "train": {"acc": 0.5}, "extra": {"fisher_rao": {"value": 4.2}},
           "best_val_acc": 81.0, "config": {"optim": {"lr": 0.1}}, "seed": 3}
    # config and identity fields are not metrics
    assert record_metrics(rec) == {"summary.test_acc": 80.0, "train.acc": 0.5, "extra.fisher_rao.value": 4.2,
                                   "best_val_acc": 81.0}


def test_mean_and_sample_std_over_seeds(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    vals = [80.0, 81.0, 83.0, 79.5, 82.25]
    for s, v in enumerate(vals):
        write(store, "exp_a", s, summary={"test_acc": v})
    recs = load_records(tmp_path)
    assert len(recs.runs) == 5 and set(recs.runs["status"]) == {"completed"}
    spec = TableSpec(id="t", title="t", rows=(Axis("Test", metric=parse_metric("summary.test_acc")),),
                     columns=(Axis("A", experiment="exp_a"),))
    st = build_table(spec, recs).stats("Test", "A")
    assert st.n == 5 and st.seeds == (0, 1, 2, 3, 4)
    assert st.mean == pytest.approx(np.mean(vals), abs=1e-12)
    assert st.std == pytest.approx(np.std(vals, ddof=1), abs=1e-12)
    assert format_cell(st, ".1f") == f"{np.mean(vals):.1f} ± {np.std(vals, ddof=1):.1f}"


def _two_column_table(seeds=(0, 1, 2, 3, 4)) -> TableSpec:
    return TableSpec(
        id="t", title="toy", seeds=tuple(seeds), number_format=".2f",
        rows=(Axis("Test Set", metric=parse_metric("summary.test_acc")),
              Axis("Fog", metric=parse_metric("summary.corruption_acc.fog"))),
        columns=(Axis("A", experiment="exp_a"), Axis("B", experiment="exp_b")),
    )


def test_missing_seeds_failed_run_duplicate_cell_by_cell(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    # exp_a: seeds 0-2 complete; seed 3 failed; seed 4 absent
    a = {0: (70.0, 50.0), 1: (72.0, 52.0), 2: (74.0, 57.0)}
    for s, (t, f) in a.items():
        write(store, "exp_a", s, summary={"test_acc": t, "corruption_acc": {"fog": f}})
    write(store, "exp_a", 3, status="failed")
    # exp_b: seeds 0-4 complete, seed 2 also completed under another config key -> duplicate
    b = {0: 60.0, 1: 61.0, 2: 62.0, 3: 63.0, 4: 64.0}
    for s, t in b.items():
        write(store, "exp_b", s, summary={"test_acc": t, "corruption_acc": {"fog": t - 10}})
    write(store, "exp_b", 2, key="k2", summary={"test_acc": 99.0, "corruption_acc": {"fog": 99.0}})
    # a seed outside the table's list, and an unrelated experiment
    write(store, "exp_b", 7, summary={"test_acc": 1.0, "corruption_acc": {"fog": 1.0}})
    write(store, "other", 0, summary={"test_acc": 5.0})

    res = build_table(_two_column_table(), load_records(tmp_path))
    sa = res.stats("Test Set", "A")
    assert (sa.n, sa.seeds) == (3, (0, 1, 2))
    assert sa.mean == pytest.approx(72.0) and sa.std == pytest.approx(2.0)  # std([70,72,74], ddof=1) = 2
    fa = res.stats("Fog", "A")
    assert fa.mean == pytest.approx(53.0) and fa.std == pytest.approx(np.std([50, 52, 57], ddof=1))
    sb = res.stats("Test Set", "B")  # seed 2 excluded (duplicate), seed 7 ignored
    assert sb.seeds == (0, 1, 3, 4)
    assert sb.mean == pytest.approx(np.mean([60, 61, 63, 64]))
    assert sb.std == pytest.approx(np.std([60, 61, 63, 64], ddof=1))
    assert res.stats("Fog", "B").mean == pytest.approx(np.mean([50, 51, 53, 54]))

    grid = res.text_grid()
    assert grid.loc["Test Set", "A"] == "72.00 ± 2.00 (3/5)"
    assert grid.loc["Test Set",
                    "B"] == f"{np.mean([60, 61, 63, 64]):.2f} ± {np.std([60, 61, 63, 64], ddof=1):.2f} (4/5)"

    notes = res.notes
    assert any(n.startswith("duplicate: exp_b seed 2") and "k1 (data: ?), k2 (data: ?)" in n
               for n in notes), notes
    assert any(n.startswith("failed: exp_a seed 3") and "boom" in n for n in notes), notes
    assert any(n.startswith("ignored: exp_b seed 7") for n in notes), notes
    assert not any("other" in n for n in notes)
    md = render_markdown(res)
    assert "duplicate: exp_b seed 2" in md and "failed: exp_a seed 3" in md

    # pinning a config key resolves the duplicate: k2 only -> seed 2 alone for exp_b
    pinned = build_table(_two_column_table(), load_records(tmp_path), pins={"exp_b": "k2"})
    pb = pinned.stats("Test Set", "B")
    assert (pb.n, pb.mean, pb.std) == (1, 99.0, None)
    assert format_cell(pb, ".1f") == "99.0 (1/5)"
    assert any(n.startswith("ignored: exp_b seed 0 [k1]") for n in pinned.notes)


def test_empty_cell_is_a_dash_and_failed_only_seed_counts_nothing(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    write(store, "exp_a", 0, status="failed")
    res = build_table(_two_column_table(), load_records(tmp_path))
    st = res.stats("Test Set", "A")
    assert (st.n, st.mean, st.std) == (0, None, None)
    assert res.text_grid().loc["Test Set", "A"] == "–"
    assert res.text_grid(latex=True).loc["Test Set", "A"] == "--"


def test_missing_metric_in_completed_record_is_noted(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    write(store, "exp_a", 0, summary={"test_acc": 70.0})  # no corruption_acc (run without the suite)
    res = build_table(_two_column_table(seeds=[0]), load_records(tmp_path))
    assert res.stats("Test Set", "A").mean == 70.0
    assert res.stats("Fog", "A").n == 0
    assert any("missing metric: summary.corruption_acc.fog" in n and "exp_a" in n for n in res.notes)


def test_failed_seed_with_a_completed_record_elsewhere_is_marked_superseded(tmp_path: Path) -> None:
    store = RecordStore(tmp_path)
    write(store, "exp_a", 0, key="k1", summary={"test_acc": 70.0})
    write(store, "exp_a", 0, key="k2", status="failed")
    sel = select_runs(load_records(tmp_path), ["exp_a"], [0])
    assert sel.chosen == {("exp_a", 0): "k1"}
    assert sel.failed[0]["superseded"] is True
    assert "a completed record of this seed is used" in sel.notes()[0]


def test_unreadable_record_is_listed_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "exp_a" / "k1" / "seed0.json"
    p.parent.mkdir(parents=True)
    p.write_text("{not json")
    recs = load_records(tmp_path)
    assert list(recs.runs["status"]) == ["unreadable"]
    assert (recs.runs["name"].iloc[0], recs.runs["seed"].iloc[0]) == ("exp_a", 0)
    sel = select_runs(recs, ["exp_a"], [0])
    assert not sel.chosen and sel.failed and sel.failed[0]["status"] == "unreadable"
    assert load_records(tmp_path / "absent").runs.empty


def test_metric_expressions() -> None:
    m = {"summary.test_acc": 90.0, "train.acc": 0.955, "train.eval_acc": 97.0,
         "summary.corruption_acc.fog": 71.5}
    assert parse_metric({"error": "summary.corruption_acc.fog"})(m) == pytest.approx(28.5)
    assert parse_metric({"percent": "train.acc"})(m) == pytest.approx(95.5)
    assert parse_metric({"diff": ["summary.test_acc", "train.eval_acc"]})(m) == pytest.approx(-7.0)
    assert parse_metric({"absdiff": ["summary.test_acc", "train.eval_acc"]})(m) == pytest.approx(7.0)
    fo = parse_metric({"first_of": ["train.eval_acc", {"percent": "train.acc"}]})
    assert fo(m) == 97.0
    assert fo({"train.acc": 0.5}) == pytest.approx(50.0)
    assert fo({}) is None
    assert parse_metric({"absdiff": ["summary.test_acc", "nope"]})(m) is None
    assert str(fo) == "first_of(train.eval_acc, percent(train.acc))"


@pytest.mark.parametrize("bad",
                         ["", {"error": ["a", "b"]}, {"diff": ["a"]}, {"sqrt": "a"}, 3, {"first_of": []}])
def test_bad_metric_spec_names_valid_forms(bad) -> None:
    with pytest.raises(ValueError, match="error|argument"):
        parse_metric(bad)


def test_cell_stats_edge_cases() -> None:
    assert cell_stats({}, 5).mean is None
    one = cell_stats({3: 4.0}, 5)
    assert (one.mean, one.std, one.n, one.seeds) == (4.0, None, 1, (3,))
    two = cell_stats({0: 1.0, 1: 2.0}, 2)
    assert two.std == pytest.approx(np.sqrt(0.5)) and two.complete


def test_record_ids_from_record_not_folder(tmp_path: Path) -> None:
    # the identity comes from the record itself; a record copied under a wrong folder keeps its name/seed
    p = tmp_path / "wrong" / "kk" / "seed9.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"name": "exp_a", "seed": 1, "config_key": "k1", "status": "completed",
                             "summary": {"test_acc": 50.0}}))
    recs = load_records(tmp_path)
    assert (recs.runs["name"].iloc[0], int(recs.runs["seed"].iloc[0])) == ("exp_a", 1)
    assert recs.metrics("exp_a", "k1", 1) == {"summary.test_acc": 50.0}


def _on(data_target: str) -> dict:
    return {"config": {"data": {"_target_": data_target}}}


def test_data_filter_separates_quick_digits_runs_from_cifar_runs(tmp_path: Path) -> None:
    """A digits smoke run of a thesis experiment and its CIFAR-10 run are two config keys of one
    (experiment, seed): a duplicate that names both data sets, resolved by --data."""
    store = RecordStore(tmp_path)
    cifar, digits = "bioreg.data.cifar10.CIFAR10DataModule", "bioreg.data.digits.DigitsDataModule"
    for s, v in enumerate([80.0, 82.0]):
        write(store, "exp_a", s, key="kc", summary={"test_acc": v}, **_on(cifar))
    write(store, "exp_a", 0, key="kd", summary={"test_acc": 10.0}, **_on(digits))
    spec = _two_column_table(seeds=(0, 1))
    mixed = build_table(spec, load_records(tmp_path))
    assert mixed.stats("Test Set", "A").n == 1  # seed 0 is ambiguous and left out
    note = "\n".join(mixed.selection.notes())
    assert "kc (data: cifar10)" in note and "kd (data: digits)" in note
    assert "--data (cifar10 or digits)" in note
    only_cifar = build_table(spec, load_records(tmp_path, data="cifar10")).stats("Test Set", "A")
    assert (only_cifar.n, only_cifar.mean) == (2, 81.0)
    only_digits = build_table(spec, load_records(tmp_path, data="digits")).stats("Test Set", "A")
    assert (only_digits.n, only_digits.mean) == (1, 10.0)
    with pytest.raises(ValueError, match=r"no records trained on data 'mnist'.*cifar10, digits"):
        load_records(tmp_path, data="mnist")


def test_pins_must_be_well_formed() -> None:
    from bioreg.results.aggregate import parse_pins

    assert parse_pins(["a=k1", "b=k2"]) == {"a": "k1", "b": "k2"}
    for bad in ("a", "=k", "a="):
        with pytest.raises(ValueError, match="expected EXPERIMENT=CONFIG_KEY"):
            parse_pins([bad])

"""The command behind scripts/evaluate_checkpoint.py (bioreg.app.evaluate_record): each mistake in the
call ends it with one message naming what to give instead, before anything is built or evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bioreg.app.evaluate_record import (
    eval_config,
    evaluate_record,
    find_record,
    pick_evaluators,
    split_overrides,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_find_record(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "seed0.json").write_text("{}")
    assert find_record(tmp_path / "a") == tmp_path / "a" / "seed0.json"
    assert find_record(tmp_path / "a" / "seed0.json") == tmp_path / "a" / "seed0.json"
    (tmp_path / "a" / "seed1.json").write_text("{}")
    with pytest.raises(SystemExit, match="no record.json and 2 seed"):
        find_record(tmp_path / "a")
    (tmp_path / "a" / "record.json").write_text("{}")
    assert find_record(tmp_path / "a") == tmp_path / "a" / "record.json"
    with pytest.raises(SystemExit, match="no such record file or run directory"):
        find_record(tmp_path / "b")


def test_overrides_evaluators_and_eval_group():
    assert split_overrides(["eval.evaluators.attacks.n=5", "+eval.x=1", "data_dir=/d"]) == (
        ["eval.evaluators.attacks.n=5", "+eval.x=1"], ["data_dir=/d"])
    with pytest.raises(SystemExit, match="key=value"):
        split_overrides(["data_dir"])
    evs = {"attacks": {"_target_": "a"}, "fisher_rao": {"_target_": "f"}, "off": None}
    assert list(pick_evaluators(evs, None, "attacks")) == ["attacks", "fisher_rao"]
    assert list(pick_evaluators(evs, ["fisher_rao"], "attacks")) == ["fisher_rao"]
    with pytest.raises(SystemExit, match=r"--only \['pgd'\]: not in eval=attacks; its evaluators: attacks, "):
        pick_evaluators(evs, ["pgd"], "attacks")
    with pytest.raises(SystemExit, match="eval=clean has no evaluators; try --eval attacks"):
        pick_evaluators({"off": None}, None, "clean")
    with pytest.raises(SystemExit, match="no conf/eval/nope.yaml; choose one of .*attacks"):
        eval_config(CONF, "nope", [])
    assert "evaluators" in eval_config(CONF, "attacks", [])


def test_a_file_that_is_no_record(tmp_path):
    rec = tmp_path / "seed0.json"
    rec.write_text(json.dumps({"name": "x"}))
    with pytest.raises(SystemExit, match="not a bioreg run record"):
        evaluate_record(rec, conf_dir=CONF)

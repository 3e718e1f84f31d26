"""The red-flag verdicts and the ``make red-flags`` table are pinned: every key, value and character.

``tests/data/red_flags_golden.json`` holds what :func:`bioreg.evaluate.gradient_masking.evaluate_red_flags`
(the ``red_flags`` record section) and :func:`format_red_flags` (``scripts/red_flags.py``, markdown and
rich) returned for the constructed sections below *before* the five flag blocks were rewritten as a
table of named rules (issue 20); the rewrite must reproduce them exactly. The sections reach every
branch: each flag raised, not raised and not evaluated, every reason of flag 4, non-default
thresholds, stored verdicts vs recomputed ones. Regenerate only for an intended change of the record
format or the table: ``uv run python tests/test_red_flags.py`` (and say why in the commit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bioreg.evaluate.gradient_masking import FLAGS, RULES, Thresholds, evaluate_red_flags, format_red_flags
from bioreg.evaluate.stats import acc_entry

GOLDEN = Path(__file__).parent / "data" / "red_flags_golden.json"


def _e(k: int, n: int = 100) -> dict[str, Any]:
    return acc_entry(k, n)


def _sweep(ks: list[int], n: int = 100) -> dict[str, Any]:
    eps = [2 / 255, 4 / 255, 8 / 255, 16 / 255][: len(ks)]
    return {"eps": eps, "acc": [_e(k, n)["acc"] for k in ks], "ci95": [_e(k, n)["ci95"] for k in ks], "n": n}


#: name -> (section, keyword thresholds of evaluate_red_flags)
CASES: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    # every flag raised: PGD > FGSM, Square < PGD, unbounded leaves 10 %, a significant rise, RS breaks 20 %
    "all_raised": ({"n": 100, "clean": _e(95), "linf": {"fgsm": _e(20), "pgd_ce": _e(80), "pgd_t": _e(85),
                                                        "square": _e(5)},
                    "unbounded": {**_e(5, 50), "eps": 1.0, "steps": 20}, "eps_sweep": _sweep([10, 60, 20, 5]),
                    "random_search": {"n": 100, "random_search_only": 20, "square_only": 15,
                                      "noise_only": 5}}, {}),
    # nothing raised: success rises with eps, unbounded reaches 100 %, RS breaks nothing
    "none_raised": ({"n": 100, "clean": _e(90), "linf": {"fgsm": _e(40), "pgd_ce": _e(30), "square": _e(35)},
                     "unbounded": {**_e(0, 50), "eps": 1.0, "steps": 20},
                     "eps_sweep": _sweep([70, 50, 30, 10]),
                     "random_search": {"n": 100, "random_search_only": 0, "square_only": 0}}, {}),
    # flag 4: not rising, not saturated
    "eps_flat": ({"linf": {"fgsm": _e(40), "pgd_ce": _e(41)}, "eps_sweep": _sweep([40, 41, 40, 39])}, {}),
    # flag 4: saturated at the largest eps without a significant rise
    "eps_saturated": ({"linf": {}, "eps_sweep": _sweep([0, 0])}, {}),
    # a sweep with one eps and random search without counts: not evaluated
    "short_sweep": ({"linf": {"pgd_ce": _e(30)}, "eps_sweep": _sweep([30]),
                     "random_search": {"n": 100}}, {}),
    # nothing at all
    "empty": ({}, {}),
    # random search with n = 0, linf None
    "rs_zero": ({"linf": None, "random_search": {"n": 0, "random_search_only": 0}}, {}),
    # thresholds: a stricter rs_tol, a lenient unbounded_tol and saturation_acc
    "thresholds": ({"linf": {"fgsm": _e(20), "pgd_ce": _e(25)},
                    "unbounded": {**_e(1, 50), "eps": 1.0, "steps": 10}, "eps_sweep": _sweep([30, 20, 5, 3]),
                    "random_search": {"n": 100, "random_search_only": 3, "noise_only": 3}},
                   {"rs_tol": 0.1, "saturation_acc": 5.0, "unbounded_tol": 2.0}),
}

#: records for the table: computed verdicts, stored verdicts (deliberately unlike the numbers), none
RECORDS: list[dict[str, Any]] = [
    {"name": "a", "seed": 0, "extra": {"attacks": CASES["all_raised"][0]}},
    {"name": "b", "seed": 1, "extra": {"attacks": {**CASES["none_raised"][0],
                                                   "red_flags": evaluate_red_flags(CASES["all_raised"][0])}}},
    {"name": "c", "extra": {"attacks": CASES["eps_flat"][0]}},
    {"name": "plain", "seed": 0, "extra": {}},
    {"seed": 2, "extra": {"attacks": CASES["empty"][0] | {"n": 7}}},
]


def _current() -> dict[str, Any]:
    out: dict[str, Any] = {"flags": FLAGS, "verdicts": {}, "tables": {}}
    for name, (sec, kw) in CASES.items():
        out["verdicts"][name] = evaluate_red_flags(sec, **kw)
    for fmt in ("markdown", "rich"):
        for recompute in (False, True):
            out["tables"][f"{fmt}/{'recompute' if recompute else 'stored'}"] = format_red_flags(
                RECORDS, fmt=fmt, recompute=recompute)
    out["tables"]["none"] = format_red_flags(RECORDS[3:4])
    return json.loads(json.dumps(out))  # tuples -> lists, as in a record


def test_red_flags_and_table_equal_the_pinned_ones():
    golden = json.loads(GOLDEN.read_text())
    now = _current()
    assert now["flags"] == golden["flags"]
    for name in CASES:
        assert now["verdicts"][name] == golden["verdicts"][name], name
        assert list(now["verdicts"][name]) == list(golden["verdicts"][name]), name  # key order too
    for key in golden["tables"]:
        assert now["tables"][key] == golden["tables"][key], key


def test_the_cases_reach_every_verdict():
    seen = {k: {v[k]["flag"] for v in _current()["verdicts"].values()} for k in FLAGS}
    assert all(s == {True, False, None} for s in seen.values()), seen
    why = {v["eps_not_increasing"]["evidence"].rsplit("; ", 1)[-1] for v in _current()["verdicts"].values()
           if v["eps_not_increasing"]["flag"] is not None}
    assert len(why) == 4, why


def test_the_rules_table_names_each_flag_its_check_and_source():
    assert [r.key for r in RULES] == list(FLAGS) and len(set(FLAGS)) == 5
    assert [r.label.split(" ", 1)[0] for r in RULES] == ["1", "2", "3", "4", "5"]  # the thesis's order
    for r in RULES:
        assert r.checks and "Athalye et al. (2018)" in r.reference and "Singh (2023) §1.3.6" in r.reference
        missing = r.verdict({}, Thresholds())
        assert missing == {"flag": None, "evidence": f"not evaluated ({r.needs} not run)", "values": {}}
    # each predicate sees only the thresholds it is given
    sec = CASES["thresholds"][0]
    strict = {r.key: r.verdict(sec, Thresholds(rs_tol=0.1))["flag"] for r in RULES}
    lenient = {r.key: r.verdict(sec, Thresholds(rs_tol=50.0, unbounded_tol=5.0))["flag"] for r in RULES}
    assert strict["random_search_better"] and not lenient["random_search_better"]
    assert strict["unbounded_short"] and not lenient["unbounded_short"]


def test_bad_table_format():
    with pytest.raises(ValueError, match="markdown or rich"):
        format_red_flags(RECORDS, fmt="html")


if __name__ == "__main__":  # regenerate the golden file (see the module docstring)
    GOLDEN.write_text(json.dumps(_current(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}")


def test_make_red_flags_reads_the_completed_records_by_name_and_seed(tmp_path, capsys):
    import importlib.util

    from bioreg.evaluate.gradient_masking import run_records

    def rec(name, seed, status, case):
        return {"name": name, "seed": seed, "status": status, "extra": {"attacks": CASES[case][0]}}

    recs = [rec("normout_a", 1, "completed", "all_raised"), rec("normout_a", 0, "completed", "eps_flat"),
            rec("baseline", 0, "completed", "none_raised"), rec("normout_b", 0, "failed", "empty")]
    for r in recs:
        p = tmp_path / r["name"] / "k" / f"seed{r['seed']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({**r, "config_key": "k"}))
    got = run_records(tmp_path)
    assert [(r["name"], r["seed"]) for r in got] == [("baseline", 0), ("normout_a", 0), ("normout_a", 1)]
    assert [(r["name"], r["seed"]) for r in run_records(tmp_path, "normout*")] == [("normout_a", 0),
                                                                                   ("normout_a", 1)]
    path = Path(__file__).parents[1] / "scripts" / "red_flags.py"
    spec = importlib.util.spec_from_file_location("_red_flags", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    capsys.readouterr()
    assert script.main(["--results-dir", str(tmp_path), "--name", "normout*"]) == 0
    assert capsys.readouterr().out == format_red_flags(run_records(tmp_path, "normout*")) + "\n"
    assert script.main(["--results-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip() == f"--results-dir {tmp_path / 'none'}: no such directory"

"""Files in ``results_dir`` that are not run records (issue 13, case 12): truncated JSON, JSON that is
not an object (``[]``, a number, a string, null), identity fields of the wrong type. ``make tables``
(scripts/make_table.py) and ``make compare`` (scripts/compare.py) list them as unreadable and go on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bioreg.results.aggregate import dataset_of, load_records, select_runs
from bioreg.results.records import RecordStore, read_record
from bioreg.results.tables import load_spec

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

#: file content -> the reason the listing must give
BAD = {
    "[]": "not a JSON object but an array",
    "3": "not a JSON object but a number",
    '"text"': "not a JSON object but a string",
    "null": "not a JSON object but null",
    '{"name": "ex': "JSONDecodeError",
    '{"seed": "x", "status": "completed"}': "field 'seed' is 'x', not an integer",
    '{"name": ["a"], "seed": 0}': "field 'name' is ['a'], not a string",
}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("text", list(BAD))
def test_read_record_names_why_a_file_is_not_a_record(tmp_path: Path, text: str) -> None:
    p = tmp_path / "seed0.json"
    p.write_text(text)
    rec = read_record(p)
    assert rec["status"] == "unreadable" and BAD[text] in rec["error"]


def test_read_record_keeps_a_record_and_survives_odd_bytes(tmp_path: Path) -> None:
    p = tmp_path / "seed0.json"
    good = {"name": "a", "seed": 2, "config_key": "k", "status": "completed", "config": [1]}
    p.write_text(json.dumps(good))
    assert read_record(p) == good
    assert dataset_of(good) == "?"  # a non-mapping config does not crash the data-set filter
    p.write_bytes(b"\xff\xfe{")
    assert "UnicodeDecodeError" in read_record(p)["error"]
    d = tmp_path / "x" / "k" / "seed1.json"
    d.mkdir(parents=True)  # a folder with a record's name
    assert read_record(d)["status"] == "unreadable"


def _results(tmp_path: Path) -> tuple[Path, str, list[Path]]:
    """One completed record of the first experiment of table 2.3 (seed 0) and a bad file for each case:
    the first beside it (same experiment, seed 1), the others under names of no table."""
    root = tmp_path / "runs"
    exp = load_spec("2.3").experiments[0]
    RecordStore(root).write({"name": exp, "seed": 0, "config_key": "k1", "status": "completed",
                             "summary": {"test_acc": 81.5}})
    bad = []
    for i, text in enumerate(BAD):
        p = root / (exp if i == 0 else f"junk{i}") / "k1" / ("seed1.json" if i == 0 else "seed0.json")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        bad.append(p)
    return root, exp, bad


def test_load_records_lists_non_objects_as_unreadable(tmp_path: Path) -> None:
    root, exp, bad = _results(tmp_path)
    recs = load_records(root)
    assert sorted(p for p, _ in recs.unreadable()) == sorted(str(p) for p in bad)
    assert (recs.runs["status"] == "completed").sum() == 1
    sel = select_runs(recs, [exp], [0, 1])
    assert sel.chosen == {(exp, 0): "k1"}
    assert sel.notes() == [f"unreadable: {exp} seed 1 [k1]: {bad[0]}: not a JSON object but an array"]
    assert load_records(root, data="cifar10").runs.empty  # the data-set filter reads them without crashing
    lines = recs.unreadable_lines()
    assert lines[0].startswith(f"warning: {len(BAD)} file(s) in {root} are not run records")
    assert len(lines) == len(BAD) + 1


def test_make_table_lists_unreadable_files_and_builds_the_table(tmp_path: Path, capsys) -> None:
    root, exp, bad = _results(tmp_path)
    out = tmp_path / "tables"
    rc = _script("make_table").main(["2.3", "--results-dir", str(root), "--out-dir", str(out)])
    std = capsys.readouterr()
    assert rc == 0
    for p, why in zip(bad, BAD.values(), strict=True):
        assert f"unreadable: {p}: " in std.err and why in std.err
    assert "Traceback" not in std.err
    md = (out / "table_2_3.md").read_text()
    assert f"unreadable: {exp} seed 1 [k1]" in md  # the table's own notes name the file of its experiment
    assert "81.5" in std.out  # the completed record still feeds its cell


def test_compare_lists_unreadable_files(tmp_path: Path, capsys) -> None:
    root, exp, bad = _results(tmp_path)
    report = tmp_path / "REPORT.md"
    rc = _script("compare").main(["--results-dir", str(root), "--out", str(report), "--tables", "2.3"])
    std = capsys.readouterr()
    assert rc == 0 and "wrote" in std.out
    text = report.read_text()
    assert f"{len(BAD)} unreadable" in text and "### Unreadable records" in text
    for p in bad:
        assert f"`{p}`" in text and f"unreadable: {p}: " in std.err


@pytest.mark.parametrize("text", ["[]", "3", '{"name": "ex'])
def test_other_readers_of_a_record_refuse_a_non_record_with_a_reason(tmp_path: Path, text: str) -> None:
    from types import SimpleNamespace

    from bioreg.evaluate.robustness import CorruptionError

    p = tmp_path / "runs" / "exp" / "k1" / "seed0.json"
    p.parent.mkdir(parents=True)
    p.write_text(text)
    why = BAD[text]
    with pytest.raises(ValueError, match=f"robustness reference .* is not a run record: {why}"):
        CorruptionError(reference=str(p))(SimpleNamespace(metrics={}))
    with pytest.raises(SystemExit, match=f"not a bioreg run record \\({why}"):
        _script("evaluate_checkpoint").main([str(p)])

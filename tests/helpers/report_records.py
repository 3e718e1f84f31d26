"""Run records for the report tests: records that follow a table's published protocol, smoke runs
that do not, failed and foreign files (bioreg.results.report, tests/test_report*.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bioreg.results.aggregate import load_records
from bioreg.results.claim_stats import PublishedRuns
from bioreg.results.compare import Claim
from bioreg.results.protocol import get_protocol
from bioreg.results.records import RecordStore
from bioreg.results.report import Report, build_report
from bioreg.results.tables import TableSpec, spec_from_dict

DATA_TARGETS = {
    "cifar10": "bioreg.data.cifar10.CIFAR10DataModule",
    "digits": "bioreg.data.digits.DigitsDataModule",
}


def set_path(d: dict, path: str, value: Any) -> None:
    *head, last = path.split(".")
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value


def record(
    name: str,
    seed: int,
    follows: str,
    metrics: Mapping[str, float] | None = None,
    *,
    key: str = "k1",
    smoke: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict:
    """A completed record of ``name``/``seed`` whose settings follow ``follows`` (an id of
    specs/protocols.yaml), with ``metrics`` (record paths → values). ``smoke`` changes settings:
    ``{"data": "digits", "config.trainer.max_epochs": 1, ...}`` makes it a smoke run."""
    rec: dict[str, Any] = {
        "name": name,
        "seed": seed,
        "config_key": key,
        "status": "completed",
        "config": {"data": {"_target_": DATA_TARGETS["cifar10"]}, "trainer": {}},
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "versions": {"python": "3.11.7", "torch": "2.14.1"},
        "device": "NVIDIA H100",
        "wall_time_s": 3600.0,
    }
    for s in get_protocol(follows).settings:
        if s.data is not None:
            rec["config"]["data"]["_target_"] = DATA_TARGETS[s.data]
        else:
            set_path(rec, s.path, s.value)
    for path, v in dict(smoke or {}).items():
        if path == "data":
            rec["config"]["data"]["_target_"] = DATA_TARGETS[v]
        else:
            set_path(rec, path, v)
    for path, v in dict(metrics or {}).items():
        set_path(rec, path, v)
    rec.update(fields)
    return rec


def requeued_record(name: str, seed: int, follows: str, status: str = "requeued", key: str = "k1") -> dict:
    """A run stopped by a signal after two stints (3600 s + 1800 s) that resumes when relaunched
    (``records.INCOMPLETE``), with the failure section a run writes since issue 19."""
    rec = record(name, seed, follows, key=key, status=status, error="killed by SIGTERM during training: "
                 "epoch 3 of 350", wall_time_s=5400.0)
    rec["failure"] = {"exception": "SIGTERMException", "signal": "SIGTERM", "stage": "train", "epoch": 3,
                      "max_epochs": 350}
    rec["stints"] = [
        {"started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T01:00:00+00:00",
         "wall_time_s": 3600.0,
         "end": "requeued", "host": "node1", "slurm_job": "42_0"},
        {"started": "2026-01-01T02:00:00+00:00", "finished": "2026-01-01T02:30:00+00:00",
         "wall_time_s": 1800.0,
         "end": status, "host": "node2", "slurm_job": "42_0"},
    ]
    return rec


DIGITS_SMOKE = {"data": "digits", "config.trainer.max_epochs": 1, "metrics.test.n": 359}


# ----------------------------------------------------------------------------- a small report scenario

OCC = "dutta2019_ch2_occlusion"  # protocol of T1: CIFAR-10, 350 epochs, the whole test set, all occlusions
FR = "singh2023_fisher_rao"  # protocol of T2

T1 = {  # Dutta's layout: metrics are rows, experiments columns (-> bars); printed std per cell
    "id": "t1",
    "title": "two metrics x three models",
    "paper": "t1.csv",
    "seeds": [0, 1, 2],
    "protocol": OCC,
    "rows": [
        {"label": "Test Set", "metric": "summary.test_acc"},
        {"label": "Central", "metric": "summary.occlusion_acc.central"},
    ],
    "columns": [
        {"label": "A", "experiment": "exp_a"},
        {"label": "B", "experiment": "exp_b"},
        {"label": "C", "experiment": "exp_c"},
    ],
}
T1_PAPER = (
    "table,row,column,mean,std\n"
    "t1,Test Set,A,80.0,1.0\nt1,Test Set,B,70.0,1.0\nt1,Test Set,C,60.0,0.0\n"
    "t1,Central,A,50.0,1.0\nt1,Central,B,40.0,2.0\nt1,Central,C,30.0,0.0\n"
)
T2 = {  # Singh's layout: experiments are rows, a metric column (-> panels); no printed std
    "id": "t2",
    "title": "one metric",
    "paper": "t2.csv",
    "seeds": [0, 1, 2],
    "protocol": FR,
    "rows": [{"label": "D", "experiment": "exp_d"}, {"label": "E", "experiment": "exp_e"}],
    "columns": [{"label": "Norm", "metric": "extra.fisher_rao.value"}],
}
T2_PAPER = "table,row,column,mean,std\nt2,D,Norm,10.0,\nt2,E,Norm,20.0,\n"
T3 = {
    "id": "t3",
    "title": "nobody ran this",
    "seeds": [0, 1, 2],
    "protocol": OCC,
    "rows": [{"label": "Z", "experiment": "exp_z"}],
    "columns": [{"label": "acc", "metric": "summary.test_acc"}],
}

CLAIMS = [
    # A > B on both rows (80 > 70, 55 > 43), but B has 2 seeds: not enough data (fewer than 3 seeds)
    Claim(
        id="c-greater",
        table="t1",
        text="A beats B",
        source="here",
        check="count_greater",
        claimed=2,
        lines=("Test Set", "Central"),
        greater="A",
        than="B",
    ),
    # needs column C, which only smoke runs fill: not enough data
    Claim(
        id="c-best",
        table="t1",
        text="C is best",
        source="here",
        check="count_best",
        claimed=1,
        lines=("Test Set",),
        winners=("C",),
    ),
    # E (20) > D (10): reproduced
    Claim(
        id="c-pairs",
        table="t2",
        text="E above D",
        source="here",
        check="pairs_greater",
        claimed=1,
        pairs=((("E", "Norm"), ("D", "Norm")),),
    ),
    # rests on column C alone, which only smoke runs fill: no verdict (its statistics shown as smoke only)
    Claim(
        id="c-smoke",
        table="t1",
        text="C is better on the test set than under central occlusion",
        source="here",
        check="pairs_greater",
        claimed=1,
        pairs=((("Test Set", "C"), ("Central", "C")),),
    ),
]

#: run counts of the scenario's published tables (the real ones are in specs/published_runs.yaml):
#: T1 prints a std over 5 runs (testable), T2 prints no std (untestable)
PUBLISHED_RUNS = {
    "t1": PublishedRuns("t1", 5, True, "sample", "test scenario: 5 runs"),
    "t2": PublishedRuns("t2", 1, False, "none", "test scenario: no std printed"),
}


def write_records(root: Path) -> None:
    store = RecordStore(root)
    for s, off in enumerate([-1.0, 0.0, 1.0]):
        # A: test 80 ± 1 vs 80 ± 1 -> diff 0, within; central 55 ± 1 vs 50 ± 1: 5 > 2·√2 -> outside.
        # They ran with one override of their own (trainer=gpu), which the fill command must repeat.
        store.write(
            record(
                "exp_a",
                s,
                OCC,
                {"summary.test_acc": 80 + off, "summary.occlusion_acc.central": 55 + off},
                overrides=[
                    "+experiment=exp_a",
                    f"seed={s}",
                    "trainer=gpu",
                    "results_dir=/x",
                    "hydra.sweep.dir=/y",
                ],
            )
        )
        # C: only digits smoke runs (1 epoch, 359 test images): smoke cells, never a verdict
        store.write(
            record(
                "exp_c",
                s,
                OCC,
                {"summary.test_acc": 20 + s, "summary.occlusion_acc.central": 10.0},
                key="k2",
                smoke=DIGITS_SMOKE,
                overrides=["+experiment=exp_c", f"seed={s}", "data=digits", "trainer.max_epochs=1"],
            )
        )
        # D: the seeds agree exactly -> no σ; E: 20 ± 1 vs 20 (no printed std) -> within
        store.write(record("exp_d", s, FR, {"extra.fisher_rao.value": 10.0}))
        store.write(record("exp_e", s, FR, {"extra.fisher_rao.value": 20 + off}))
    for s, off in enumerate([-0.5, 0.5]):  # B: seeds 0 and 1 only -> too few seeds for a verdict
        store.write(
            record(
                "exp_b",
                s,
                OCC,
                {"summary.test_acc": 70 + off, "summary.occlusion_acc.central": 43 + off},
                overrides=["+experiment=exp_b", f"seed={s}", "trainer=gpu"],
            )
        )
    # B seed 2: a smoke run only (another config key): kept apart from the cell's protocol runs
    store.write(record("exp_b", 2, OCC, {"summary.test_acc": 30.0}, key="k2", smoke=DIGITS_SMOKE))
    # B seed 2 under the protocol: stopped by SLURM's requeue after two stints (1.5 h): not a failure, in no
    # cell
    store.write(requeued_record("exp_b", 2, OCC))
    # a killed run of C (old-style record: the bare SIGTERMException) and a truncated file
    store.write(
        {
            "name": "exp_c",
            "seed": 2,
            "config_key": "k1",
            "status": "failed",
            "error": "SIGTERMException: ",
            "config": {"data": {"_target_": "bioreg.data.cifar10.CIFAR10DataModule"}},
        }
    )
    bad = root / "exp_x" / "k1" / "seed0.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"name": "exp_x", "seed": 0, "stat')
    # files that are not records: a stray top-level JSON and a file beside a record
    (root / "notes.json").write_text('{"note": "not a record"}')
    (root / "exp_a" / "k1" / "bins.npz").write_bytes(b"\0" * 10)


def write_report_inputs(tmp_path: Path) -> tuple[list[TableSpec], Path]:
    """The records of :func:`write_records` under ``tmp_path/runs`` and the published tables under
    ``tmp_path/paper``; returns the specs of T1, T2, T3 and the paper folder."""
    paper = tmp_path / "paper"
    paper.mkdir()
    (paper / "t1.csv").write_text(T1_PAPER)
    (paper / "t2.csv").write_text(T2_PAPER)
    write_records(tmp_path / "runs")
    return [spec_from_dict(d) for d in (T1, T2, T3)], paper


def scenario_report(tmp_path: Path, extra: Sequence[Mapping[str, Any]] = (), **kw: Any) -> Report:
    """The report of the scenario written under ``tmp_path`` (:func:`write_report_inputs`, with the
    records ``extra`` added), its claims :data:`CLAIMS` and run counts :data:`PUBLISHED_RUNS`."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    specs, paper = write_report_inputs(tmp_path)
    store = RecordStore(tmp_path / "runs")
    for rec in extra:
        store.write(rec)
    return build_report(specs, load_records(tmp_path / "runs"), claims=CLAIMS,
                        results_dir=str(tmp_path / "runs"),
                        paper_dir=paper, published_runs=PUBLISHED_RUNS, **kw)

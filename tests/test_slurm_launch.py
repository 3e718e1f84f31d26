"""The SLURM launcher's logic without a cluster (src/bioreg/launch, hydra_plugins/bioreg_launcher).

The ``scontrol`` outputs under tests/data/slurm/ were captured from the one-node test cluster of
``make test-slurm`` (slurm-wlm 22.05; ``*_two.txt``: the same cluster with a second, GPU partition of
two configured ``a100`` nodes). The real-cluster behaviour itself is tests/test_slurm_cluster.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from bioreg.errors import UserError
from bioreg.launch import jobside, stints, sweep
from bioreg.launch.jobstate import (
    GONE,
    JobState,
    JobWatcher,
    expand_tasks,
    states_from_sacct,
    states_from_scontrol,
)
from bioreg.launch.request import (
    Node,
    Partition,
    Request,
    SlurmRequestError,
    check_request,
    parse_gres,
    parse_mem_mb,
    parse_minutes,
)
from bioreg.launch.slurm_cmd import expand_hostlist, parse_records, slurm_config

DATA = Path(__file__).parent / "data" / "slurm"
REPO = Path(__file__).resolve().parents[1]
#: conf/hydra/launcher/slurm.yaml's request
DEFAULT = {
    "partition": None,
    "timeout_min": 720,
    "gpus_per_node": 1,
    "cpus_per_task": 8,
    "mem_gb": 32,
    "tasks_per_node": 1,
    "nodes": 1,
    "signal_delay_s": 120,
    "additional_parameters": {},
}


def cluster(which: str) -> tuple[dict[str, Partition], list[Node]]:
    parts = [Partition.from_record(r) for r in parse_records((DATA / f"partitions_{which}.txt").read_text())]
    nodes = [Node.from_record(r) for r in parse_records((DATA / f"nodes_{which}.txt").read_text())]
    return {p.name: p for p in parts}, nodes


def refusal(which: str, **over) -> str:
    parts, nodes = cluster(which)
    with pytest.raises(SlurmRequestError) as e:
        check_request(Request.from_params({**DEFAULT, **over}), parts, nodes)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    return str(e.value)


# ----------------------------------------------------------------------------- parsing


def test_records_of_the_real_scontrol_output() -> None:
    (node,) = parse_records((DATA / "nodes_one.txt").read_text())
    assert node["NodeName"] == "vm" and node["CPUTot"] == "2" and node["Gres"] == "(null)"
    assert node["OS"].startswith("Linux ") and " #1 SMP" in node["OS"]  # a value with spaces
    assert node["CfgTRES"] == "cpu=2,mem=24105M,billing=2"  # a value with '=' signs
    parts, nodes = cluster("two")
    assert (
        parts["debug"].default and parts["debug"].max_time_min == 60 and parts["gpu"].max_time_min == 2 * 1440
    )
    assert parts["gpu"].node_names == ["gpu01", "gpu02"] and parts["gpu"].max_mem_per_node == 60000
    gpu01 = next(n for n in nodes if n.name == "gpu01")
    assert (
        gpu01.cpus,
        gpu01.mem_mb,
        gpu01.count("gpu"),
        gpu01.count("gpu", "a100"),
        gpu01.count("gpu", "h100"),
    ) == (16, 64000, 4, 4, 0)
    assert gpu01.features == {"a100", "ib"} and gpu01.partitions == {"gpu"}


@pytest.mark.parametrize(
    "text, minutes",
    [
        ("60", 60),
        ("01:00:00", 60),
        ("30:00", 30),
        ("2-00:00:00", 2880),
        ("2-12", 3600),
        ("00:00:30", 1),
        ("UNLIMITED", None),
        ("INFINITE", None),
    ],
)
def test_slurm_times(text: str, minutes: int | None) -> None:
    assert parse_minutes(text) == minutes


def test_memory_gres_and_host_lists() -> None:
    assert [parse_mem_mb(x) for x in ("4000", "4G", "4GB", "512M", "1T", "2048K")] == [
        4000,
        4096,
        4096,
        512,
        1048576,
        2,
    ]
    with pytest.raises(SlurmRequestError, match="memory size 'lots'"):
        parse_mem_mb("lots")
    assert parse_gres("gpu:a100:4(S:0-1),nic:1") == [("gpu", "a100", 4), ("nic", None, 1)]
    assert parse_gres("gpu:2") == [("gpu", None, 2)] and parse_gres("(null)") == []
    assert expand_hostlist("gpu[01-03,7],cpu1") == ["gpu01", "gpu02", "gpu03", "gpu7", "cpu1"]
    conf = slurm_config((DATA / "config_no_accounting.txt").read_text())
    assert conf["AccountingStorageType"] == "accounting_storage/none" and conf["MinJobAge"] == "300 sec"


# ----------------------------------------------------------------------------- the partition check


def test_the_default_request_on_the_test_cluster_names_every_fix() -> None:
    line = refusal("one")
    assert line.startswith("SLURM partition 'debug' can never run this request: ")
    for part in (
        "timeout_min=720 is above its MaxTime of 60 min",
        "set SLURM_TIME=60 (hydra.launcher.timeout_min=60)",
        "cpus_per_task=8 but its nodes have at most 2 CPUs",
        "set SLURM_CPUS=2 (hydra.launcher.cpus_per_task=2)",
        "gpus_per_node=1 but its nodes have no GPU",
        "set SLURM_GPUS=0 (hydra.launcher.gpus_per_node=0)",
    ):
        assert part in line
    assert "mem_gb asks 32768 MB per node but its nodes have at most 24105 MB" in line
    assert "set SLURM_MEM=23 (hydra.launcher.mem_gb=23)" in line


def test_memory_mismatch_and_its_fix() -> None:
    line = refusal("one", timeout_min=60, cpus_per_task=2, gpus_per_node=0, mem_gb=32)
    assert "mem_gb asks 32768 MB per node but its nodes have at most 24105 MB" in line
    assert line.endswith("set SLURM_MEM=23 (hydra.launcher.mem_gb=23)")
    line = refusal("one", timeout_min=60, cpus_per_task=2, gpus_per_node=0, mem_gb=None, mem_per_cpu="16G")
    assert "mem_per_cpu asks 32768 MB" in line and "set SLURM_MEM_PER_CPU=12052M" in line


def test_a_request_that_fits_passes() -> None:
    parts, nodes = cluster("two")
    ok = {**DEFAULT, "timeout_min": 60, "cpus_per_task": 2, "gpus_per_node": 0, "mem_gb": 3}
    assert check_request(Request.from_params(ok), parts, nodes) == []
    gpu = {
        **DEFAULT,
        "partition": "gpu",
        "gpus_per_node": None,
        "gres": "gpu:a100:4",
        "constraint": "a100&ib",
        "exclude": "gpu01",
    }
    assert check_request(Request.from_params(gpu), parts, nodes) == []
    # several partitions: the job runs in whichever can take it
    assert check_request(Request.from_params({**DEFAULT, "partition": "debug,gpu"}), parts, nodes) == []


def test_gpu_partition_mismatches() -> None:
    gpu = {"partition": "gpu"}
    assert "partitions with GPUs: gpu" in refusal("two", timeout_min=60, cpus_per_task=2, mem_gb=3)
    assert "gpus_per_node=5 but its nodes have at most 4 GPUs; set SLURM_GPUS=4" in refusal(
        "two", **gpu, gpus_per_node=5
    )
    line = refusal("two", **gpu, gpus_per_node=0, gres="gpu:h100:1")
    assert "gres=gpu:h100:1 but its nodes have no GPU of type h100" in line and "set SLURM_GRES=null" in line
    line = refusal("two", **gpu, gpus_per_node=0, gres="gpu:a100:8")
    assert "at most 4 GPUs of type a100; set SLURM_GRES=gpu:a100:4 (hydra.launcher.gres=gpu:a100:4)" in line
    line = refusal("two", **gpu, mem_gb=62)  # 63488 MB > MaxMemPerNode 60000
    assert "at most 60000 MB" in line and "SLURM_MEM=58" in line
    assert "constraint=h100 matches none of its nodes (their features: a100, ib)" in refusal(
        "two", **gpu, constraint="h100"
    )
    assert "exclude=gpu01,gpu02 leaves none of its nodes" in refusal("two", **gpu, exclude="gpu[01-02]")
    assert "nodes=3 but only 2 of its nodes fit the request" in refusal("two", **gpu, nodes=3)
    assert "timeout_min=3000 is above its MaxTime of 2880 min" in refusal("two", **gpu, timeout_min=3000)


def test_partition_choice_and_settings_sbatch_refuses() -> None:
    assert (
        "SLURM partition 'nope' does not exist; set SLURM_PARTITION=<name> (hydra.launcher.partition=<name>) "
        "(partitions: debug (default), gpu)" in refusal("two", partition="nope")
    )
    parts, nodes = cluster("two")
    parts["debug"].default = False
    with pytest.raises(SlurmRequestError, match="has no default one"):
        check_request(Request.from_params(DEFAULT), parts, nodes)
    line = refusal("two", partition="gpu", mem_per_cpu="1G")
    assert "mem_gb and mem_per_cpu are set together but sbatch takes one memory setting" in line
    assert "signal_delay_s=120 is not shorter than timeout_min=2" in refusal(
        "two", partition="gpu", timeout_min=2
    )
    parts["gpu"].state = "DRAIN"
    with pytest.raises(SlurmRequestError, match="its state is DRAIN: it takes no new jobs"):
        check_request(Request.from_params({**DEFAULT, "partition": "gpu"}), parts, nodes)


def test_additional_parameters_win_as_in_sbatch() -> None:
    req = Request.from_params(
        {**DEFAULT, "additional_parameters": {"time": "1-00:00:00", "gres": "gpu:2", "mem": "8G"}}
    )
    assert (req.time_min, req.mem_mb) == (1440, 8192)
    assert (req.gpus, req.gpu_key) == (1, "gpus_per_node")  # gpus_per_node is set too: sbatch gets both
    parts, nodes = cluster("two")
    (warning,) = check_request(
        Request.from_params({**DEFAULT, "partition": "gpu", "gres": "gpu:1"}), parts, nodes
    )
    assert "gres=gpu:1 and gpus_per_node=1 both ask for GPUs" in warning
    req = Request.from_params({**DEFAULT, "gpus_per_node": None, "gpus_per_task": 2, "tasks_per_node": 2})
    assert (req.gpus, req.gpu_key, req.cpus) == (4, "gpus_per_task", 16)


# ----------------------------------------------------------------------------- following jobs


def test_job_states_from_scontrol() -> None:
    st = states_from_scontrol((DATA / "job_array.txt").read_text())
    assert {j: (s.state, s.active) for j, s in st.items()} == {
        "17_0": ("COMPLETED", False),
        "17_1": ("FAILED", False),
        "17_2": ("CANCELLED", False),
        "17_3": ("PENDING", True),
        "17_4": ("RUNNING", True),
    }
    assert st["17_3"].reason == "BeginTime" and st["17_3"].restarts == 1  # requeued, held ~2 min
    assert st["17_1"].describe() == "failed (SLURM state FAILED, exit status 3)"
    assert st["17_2"].describe() == "was cancelled (SLURM state CANCELLED, signal 15)"
    pending = states_from_scontrol((DATA / "job_array_pending.txt").read_text())
    assert sorted(pending) == ["22_0", "22_1", "22_2", "22_3"] and pending["22_3"].state == "PENDING"
    assert expand_tasks("0-4%2") == [0, 1, 2, 3, 4] and expand_tasks("1,3-4") == [1, 3, 4]
    assert "MinJobAge" in JobState(GONE).describe()


def test_job_states_from_sacct() -> None:
    # sacct -n -P -X -o JobID,State,ExitCode (format of sacct's documentation; no accounting here)
    st = states_from_sacct("12_0|COMPLETED|0:0\n12_1|CANCELLED by 0|0:15\n12_[2-3%1]|PENDING|0:0\n")
    assert {j: s.state for j, s in st.items()} == {
        "12_0": "COMPLETED",
        "12_1": "CANCELLED",
        "12_2": "PENDING",
        "12_3": "PENDING",
    }


def _answer(rc: int, out: str = "", err: str = "") -> types.SimpleNamespace:
    return types.SimpleNamespace(returncode=rc, stdout=out, stderr=err)


def test_watcher_without_accounting_notices_a_forgotten_job() -> None:
    calls = []

    def run(args, timeout):
        calls.append(args[0])
        if args[0] == "sacct":
            return _answer(1, err="Slurm accounting storage is disabled")
        if args[-1] == "17":
            return _answer(0, (DATA / "job_array.txt").read_text())
        return _answer(1, err="slurm_load_jobs error: Invalid job id specified")

    st = JobWatcher(use_sacct=False, run=run).poll(["17_0", "17_3", "17_9", "99_0"])
    assert st["17_3"].active and st["17_0"].state == "COMPLETED"
    assert st["17_9"].state == st["99_0"].state == GONE  # neither slurmctld nor accounting knows them
    assert "sacct" not in calls
    assert JobWatcher(use_sacct=True, run=run).poll(["99_0"])["99_0"].state == GONE
    assert (
        JobWatcher(use_sacct=False, run=lambda a, t: None).poll(["17_0"]) == {}
    )  # no answer: ask again later


def test_watcher_asks_accounting_for_what_slurmctld_forgot() -> None:
    def run(args, timeout):
        if args[0] == "sacct":
            return _answer(0, "5_0|OUT_OF_MEMORY|0:125\n")
        return _answer(1, err="slurm_load_jobs error: Invalid job id specified")

    st = JobWatcher(use_sacct=True, run=run).poll(["5_0"])["5_0"]
    assert st.state == "OUT_OF_MEMORY" and st.describe().startswith("ran out of memory")


class FakeJob:
    def __init__(self, folder: Path, job_id: str):
        self.job_id = job_id
        d = folder / job_id
        d.mkdir(parents=True, exist_ok=True)
        self.paths = types.SimpleNamespace(
            result_pickle=d / f"{job_id}_0_result.pkl", stderr=d / f"{job_id}_0_log.err", folder=d
        )


class ScriptedWatcher:
    """States per poll, from a script: {job id: [state at poll 0, poll 1, ...]} (last one repeats)."""

    def __init__(self, script: dict[str, list[str]], on_poll=None):
        self.script, self.polls, self.on_poll = script, 0, on_poll

    def poll(self, ids):
        if self.on_poll:
            self.on_poll(self.polls)
        out = {
            j: JobState(self.script[j][min(self.polls, len(self.script[j]) - 1)])
            for j in ids
            if j in self.script
        }
        self.polls += 1
        return out


def test_wait_for_result_files_dead_jobs_and_requeues(tmp_path: Path) -> None:
    done, dead, requeued = (FakeJob(tmp_path, j) for j in ("3_0", "3_1", "3_2"))
    clock = [0.0]

    def on_poll(n):
        if n == 2:
            done.paths.result_pickle.write_bytes(b"x")
        if n == 6:
            requeued.paths.result_pickle.write_bytes(b"x")

    watcher = ScriptedWatcher(
        {
            "3_0": ["RUNNING"],
            "3_1": ["RUNNING", "FAILED"],
            "3_2": ["RUNNING", "REQUEUED", "PENDING", "RUNNING"],
        },
        on_poll,
    )
    ended = sweep.wait_for(
        [done, dead, requeued],
        watcher,
        poll_s=4.0,
        grace_s=10.0,
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
        clock=lambda: clock[0],
    )
    assert ended["3_0"] is None and ended["3_2"] is None  # result files
    assert ended["3_1"].state == "FAILED"  # ended without one, seen for the grace period


def test_outcomes_and_the_one_line_summary(tmp_path: Path, capsys) -> None:
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import cloudpickle_dump
    from submitit.slurm.slurm import SlurmJob

    ok, raised, exited, killed, exited_quietly = (SlurmJob(tmp_path / "%j", f"8_{i}") for i in range(5))
    for job in (ok, raised, exited, killed, exited_quietly):
        job.paths.folder.mkdir(parents=True)
    good = JobReturn(overrides=["seed=0"])
    good.status, good.return_value = JobStatus.COMPLETED, 97.5
    cloudpickle_dump(("success", good), ok.paths.result_pickle)
    bad = JobReturn()
    bad.status, bad.return_value = JobStatus.FAILED, jobside.RunFailed("FloatingPointError: loss is nan")
    cloudpickle_dump(("success", bad), raised.paths.result_pickle)
    cloudpickle_dump(
        ("error", "Traceback ...\nRunExited: the run exited with status 2"), exited.paths.result_pickle
    )
    exited.paths.stderr.write_text(
        "error: an older line\nerror: reg.cg.tau=-1 is invalid; valid values: > 0\n"
    )
    assert sweep.outcome_of(ok, None) == (good, None)
    assert sweep.outcome_of(raised, None) == (None, "FloatingPointError: loss is nan")
    assert sweep.outcome_of(exited, None) == (None, "error: reg.cg.tau=-1 is invalid; valid values: > 0")
    # no `error: ...` line in its log: the exception line of the trace in its result file
    cloudpickle_dump(
        ("error", "Traceback ...\nRunExited: the run exited with status 3"),
        exited_quietly.paths.result_pickle,
    )
    assert sweep.outcome_of(exited_quietly, None) == (None, "RunExited: the run exited with status 3")
    assert (
        sweep.outcome_of(killed, JobState("OUT_OF_MEMORY", exit_code="0:9"))[1]
        == "ran out of memory (SLURM state OUT_OF_MEMORY, signal 9)"
    )
    outcomes = [
        sweep.Outcome(
            i, j.job_id, ["+experiment=demo", f"seed={i}"], *sweep.outcome_of(j, s), log=j.paths.stderr
        )
        for i, (j, s) in enumerate(
            [(ok, None), (raised, None), (killed, JobState("CANCELLED", exit_code="0:15"))]
        )
    ]
    with pytest.raises(SystemExit) as e:
        sweep.report_failures(outcomes)
    assert e.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"failed: demo seed 1 (SLURM job 8_1): FloatingPointError: loss is nan; log: {raised.paths.stderr}",
        f"failed: demo seed 2 (SLURM job 8_3): was cancelled (SLURM state CANCELLED, signal 15); "
        f"log: {killed.paths.stderr}",
        "error: 2 of 3 runs of the sweep failed (lines above; tracebacks in the logs); relaunch the same "
        "command to retry them (completed runs are skipped)",
    ]
    sweep.report_failures(outcomes[:1])  # nothing failed: nothing said, no exit


# ----------------------------------------------------------------------------- the job's side


def test_job_side(monkeypatch, capsys) -> None:
    from hydra.core.utils import JobReturn, JobStatus

    renamed = []
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setattr(jobside, "run_slurm", lambda args, t: renamed.append(args) or _answer(0))
    monkeypatch.setattr(jobside, "requeue_pending", lambda: False)
    overrides = ["+experiment=corr_gaussian_layer1", "seed=3"]

    def exits(code):
        def call():
            raise SystemExit(code)

        return call

    with pytest.raises(jobside.RunExited, match="status 2"):  # a user error: a result file, at once
        jobside.guarded(exits(2), overrides)
    assert renamed[0] == ["scontrol", "update", "JobId=40_1", "JobName=corr_gaussian_layer1-s3"]
    for code in (143, -1, None):  # a signal or submitit's requeue exit: left to SLURM
        with pytest.raises(SystemExit):
            jobside.guarded(exits(code), overrides)

    def raises():
        ret = JobReturn()
        try:
            raise FloatingPointError("loss is nan\nat step 3")
        except FloatingPointError as e:
            ret.status, ret.return_value = JobStatus.FAILED, e
        return ret

    ret = jobside.guarded(raises, overrides)
    assert isinstance(ret._return_value, jobside.RunFailed)
    assert str(ret._return_value) == "FloatingPointError: loss is nan at step 3"
    assert "Traceback" in capsys.readouterr().err  # kept in the job's log
    assert (
        jobside.run_label(["name=x", "seed=0"]) == ("x", "0") and jobside.job_name(["+experiment=a"]) == "a"
    )


def test_job_side_leaves_a_requeue_to_slurm(monkeypatch) -> None:
    monkeypatch.setattr(jobside, "requeue_pending", lambda: True)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)

    def call():
        raise SystemExit(1)

    with pytest.raises(SystemExit):
        jobside.guarded(call, ["seed=0"])


# ----------------------------------------------------------------------------- records across stints


class SIGTERMException(SystemExit):  # Lightning's, by name
    pass


def test_stop_status(monkeypatch) -> None:
    monkeypatch.setattr(stints, "_requeue_asked", False)
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(var, raising=False)
    assert stints.stop_status(RuntimeError("boom")) == "failed"
    assert stints.stop_status(SIGTERMException()) == "interrupted"
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemExit(1)  # noqa: B904 -- what Lightning does on Ctrl-C
    except SystemExit as e:
        assert stints.stop_status(e) == "interrupted"
    # under SLURM: a requeue raises the job's restart count before the old process ends
    monkeypatch.setenv("SLURM_JOB_ID", "17")
    asked = []
    monkeypatch.setattr(
        stints, "run_slurm", lambda args, t: asked.append(args) or _answer(0, "JobId=21 Restarts=1\n")
    )
    assert stints.stop_status(SIGTERMException()) == "requeued" and asked[0][-1] == "17"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert stints.stop_status(SIGTERMException()) == "interrupted"  # scancel: no new restart
    stints.note_requeue()  # submitit's USR2 path: the launcher's checkpoint() was called
    assert stints.stop_status(SystemExit(-1)) == "requeued"


def test_stints_add_up_and_old_records_count_as_one(monkeypatch) -> None:
    old = {
        "status": "failed",
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T01:00:00+00:00",
        "wall_time_s": 3600.0,
    }  # written before stints existed
    rec = {"status": "completed", "started": "x"}
    stints.carry_stints(rec, old, resuming=True)
    stints.close_stint(rec, t0=__import__("time").time() - 60)
    assert [s["end"] for s in rec["stints"]] == ["failed", "completed"]
    assert rec["wall_time_s"] == pytest.approx(3660.0, abs=1.0) and rec["started"] == old["started"]
    for prev, resuming in (
        (old, False),
        ({**old, "status": "completed"}, True),
        (None, True),
        ({"status": "unreadable"}, True),
    ):
        fresh = {"status": "completed"}
        stints.carry_stints(fresh, prev, resuming)
        assert fresh["stints"] == []
    again = {"status": "completed"}
    stints.carry_stints(again, {"status": "requeued", "stints": rec["stints"]}, resuming=True)
    assert len(again["stints"]) == 2


def test_tables_treat_requeued_runs_as_incomplete(tmp_path: Path) -> None:
    from bioreg.results.aggregate import load_records, select_runs
    from bioreg.results.records import RecordStore

    store = RecordStore(tmp_path)
    store.write(
        {"name": "e", "seed": 0, "config_key": "k", "status": "requeued", "error": "SIGTERMException: "}
    )
    store.write(
        {"name": "e", "seed": 1, "config_key": "k", "status": "completed", "summary": {"test_acc": 90.0}}
    )
    sel = select_runs(load_records(tmp_path), ["e"], [0, 1])
    assert sel.chosen == {("e", 1): "k"}  # the requeued seed feeds no cell
    (note,) = sel.notes()
    assert note.startswith("incomplete: e seed 0 [k]: requeued, resumes") and "failed" not in note


# ----------------------------------------------------------------------------- the plugin


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_variables_for_the_other_slurm_settings() -> None:
    args = [
        "make",
        "-s",
        "-n",
        "reproduce-table-2.5",
        "LAUNCHER=slurm",
        "PY=python",
        "SLURM_QOS=high",
        "SLURM_CONSTRAINT=a100|h100",
        "SLURM_EXCLUDE=gpu[01-02]",
        "SLURM_GRES=gpu:a100:1",
        "SLURM_MEM_PER_CPU=4G",
    ]
    cmd = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    for part in (
        """'hydra.launcher.qos="high"'""",
        """'hydra.launcher.constraint="a100|h100"'""",
        """'hydra.launcher.exclude="gpu[01-02]"'""",
        """'hydra.launcher.gres="gpu:a100:1"'""",
        """'hydra.launcher.mem_per_cpu="4G"'""",
        "hydra.launcher.gpus_per_node=null",
        "hydra.launcher.mem_gb=null",
    ):
        assert part in cmd
    cleared = subprocess.run(
        [*args[:5], "SLURM_CONSTRAINT=null"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "'hydra.launcher.constraint=null'" in cleared and "mem_gb" not in cleared


def test_launcher_config_and_own_keys(tmp_path: Path) -> None:
    from hydra_plugins.bioreg_launcher.slurm import BioregSlurmLauncher

    la = BioregSlurmLauncher(submitit_folder=str(tmp_path), partition="gpu", check_request=False, poll_s=5)
    assert la.own == {"check_request": False, "poll_s": 5} and "poll_s" not in la.params
    assert la.params["partition"] == "gpu"


@pytest.mark.slow  # a train.py process (no training; its start-up takes 10-40 s on a shared machine)
def test_without_slurm_commands_the_sweep_stops_in_one_line(tmp_path: Path) -> None:
    """A multirun with hydra/launcher=slurm where sbatch is not on PATH (as on this machine)."""
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {**os.environ, "PATH": str(bare)}
    out = subprocess.run(
        [
            sys.executable,
            "train.py",
            "-m",
            "+experiment=demo",
            "hydra/launcher=slurm",
            "seed=0,1",
            f"hydra.sweep.dir={tmp_path}/sweep",
            f"results_dir={tmp_path}/runs",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stderr[-2000:]
    assert lines == [
        "error: hydra/launcher=slurm needs SLURM's commands sbatch, scontrol, srun, which are not on "
        "PATH; run it on a login node of the cluster (where sbatch works), or choose another launcher: "
        "hydra/launcher=local or basic (make ... LAUNCHER=local or LAUNCHER=basic)"
    ]
    assert not json.dumps(lines).count("Traceback")


def test_launcher_survives_hydra_rescanning_its_module(tmp_path: Path, monkeypatch) -> None:
    """Hydra's plugin scan executes an already imported plugin module again, so a job's unpickled
    launcher belongs to an older class object than the module's; submitit's requeue pickles it once
    more (by value) and the requeued job calls it. With ``super(BioregSlurmLauncher, self)`` in the
    methods that raised ``TypeError`` in the requeued job (found by make test-slurm)."""
    import importlib

    import cloudpickle

    monkeypatch.setattr(stints, "_requeue_asked", False)
    mod = importlib.import_module("hydra_plugins.bioreg_launcher.slurm")
    la = mod.BioregSlurmLauncher(submitit_folder=str(tmp_path), poll_s=3)
    importlib.util.find_spec(mod.__name__).loader.exec_module(mod)  # what the scan does
    assert type(la) is not mod.BioregSlurmLauncher
    again = cloudpickle.loads(cloudpickle.dumps(la))
    delayed = again.checkpoint()  # submitit's USR2 handler
    assert delayed.function is again and again.own == {"poll_s": 3} and stints.requeue_asked()

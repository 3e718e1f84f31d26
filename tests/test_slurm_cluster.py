"""The SLURM launcher against a real one-node SLURM on this machine (``make test-slurm``).

tests/helpers/slurm_testbed.py stands up munged, slurmctld and slurmd (Debian's slurm-wlm 22.05 and
munge, installed as root when absent) with **no accounting** — ``sacct`` cannot answer, the mode in
which submitit alone waits forever for a job that died. One scenario, then one test per claim:

* sweep A: ``hydra/launcher=slurm``, the digits demo, seeds 0 and 1 (one job array); when both have
  finished an epoch the test sends seed 0's job USR2 (submitit's time-limit signal: submitit
  requeues it) and runs ``scontrol requeue`` on seed 1's job (as a preemption would): each record
  says ``requeued`` while SLURM holds the job, SLURM runs the jobs again, the runs resume from
  ``last.ckpt``, their records list both stints, and seed 1 ends with the numbers and
  best-checkpoint weights of an uninterrupted run of seed 1 (run beside it without SLURM);
* sweep C: two runs that fail — one with a config error (the run's own ``error: …`` line) and one
  cancelled (``scancel``) while it trains (noticed through ``scontrol``, without ``sacct``): one
  line each, exit status 1, no traceback on the terminal;
* the launcher's default request (8 CPUs, 1 GPU, 32 GB, 720 min) on the 2-CPU, GPU-less partition
  with MaxTime 60 min: refused at start-up in one line naming the fixes, nothing submitted.

Skipped unless ``BIOREG_SLURM_TESTBED=1`` (``make test-slurm`` sets it). About 8 minutes on a
2-core machine, most of it SLURM's hold of a requeued job (BeginTime, 2 minutes) and Python start-up.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from helpers.slurm_testbed import Testbed, ensure_installed

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        os.environ.get("BIOREG_SLURM_TESTBED") != "1",
        reason="stands up a SLURM cluster here (root, apt): run `make test-slurm`",
    ),
]

TINY = [
    "+experiment=demo",
    "data=digits",
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "eval=clean",
    "eval.progress=false",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "+callbacks.pause._target_=helpers.slow_epochs.PauseAfterEpoch",
    "+callbacks.pause.seconds=3",
]
#: a request the testbed's partition can run (2 CPUs, no GPU, MaxTime 60 min)
FITS = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=30",
    "hydra.launcher.poll_s=2",
]
WAIT_S = 900


@dataclass
class Proc:
    """A ``train.py`` process of the scenario, its output in files."""

    name: str
    popen: subprocess.Popen
    out: Path
    err: Path
    rc: int | None = None

    def wait(self, timeout: float = WAIT_S) -> int:
        self.rc = self.popen.wait(timeout=timeout)
        return self.rc

    @property
    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.read_text(errors="replace")


@dataclass
class Scenario:
    work: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    requeued_at: float = 0.0
    waiting: dict[int, dict] = field(default_factory=dict)  # seed -> its record while SLURM holds the job
    cancelled_job: str = ""

    def start(self, bed: Testbed, name: str, *args: str) -> Proc:
        env = {
            **bed.env(),
            "PYTHONPATH": str(REPO / "tests"),
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        out, err = self.work / f"{name}.out", self.work / f"{name}.err"
        with out.open("w") as o, err.open("w") as e:
            p = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, env=env, stdout=o, stderr=e)
        self.procs[name] = Proc(name, p, out, err)
        return self.procs[name]

    def dirs(self, name: str) -> list[str]:
        d = self.work / name
        return [f"results_dir={d}/runs", f"ckpt_dir={d}/ckpt", f"hydra.sweep.dir={d}/sweep"]


def _until(what: str, probe, timeout: float = WAIT_S, every: float = 1.0):
    t0 = time.monotonic()
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _epoch_done(ckpt_root: Path, seed: int) -> bool:
    for last in ckpt_root.glob(f"demo/*/seed{seed}/last.ckpt"):
        try:
            return torch.load(last, map_location="cpu", weights_only=True)["epoch"] >= 1
        except Exception:  # written right now (atomically, but the glob may race the rename)
            return False
    return False


def _record(results: Path, seed: int) -> dict:
    found = list(results.glob(f"demo/*/seed{seed}.json"))
    return json.loads(found[0].read_text()) if found else {}


def _jobs(bed: Testbed) -> dict[str, tuple[str, str]]:
    """{job id: (name, state)} of the queue."""
    out = bed.run("squeue", "-h", "-r", "-o", "%i|%j|%T", check=False).stdout
    return {i: (n, s) for i, n, s in (ln.split("|") for ln in out.splitlines() if ln.count("|") == 2)}


@pytest.fixture(scope="module")
def bed():
    ensure_installed()
    root = Path(tempfile.mkdtemp(prefix="bioreg-slurm-"))
    testbed = Testbed(root)
    testbed.start()
    try:
        yield testbed
    finally:
        testbed.stop()
        shutil.rmtree(root, ignore_errors=True)


def _record_with_status(results: Path, seed: int, status: str) -> dict | None:
    rec = _record(results, seed)
    return rec if rec.get("status") == status else None


def _requeue_both(sc: Scenario, bed: Testbed) -> None:
    """When both runs of sweep A have a last.ckpt past epoch 0: send seed 0's job USR2 (submitit's
    time-limit signal: its handler calls the launcher's checkpoint() and requeues the job) and requeue
    seed 1's job from outside (``scontrol requeue``, as an administrator or a preemption would); keep
    the records they leave while SLURM holds them."""
    for seed in (0, 1):
        _until(f"seed {seed} to finish an epoch", lambda seed=seed: _epoch_done(sc.work / "a" / "ckpt", seed))
    jobs = _jobs(bed)
    sc.names |= {n for n, _ in jobs.values()}
    job = {
        seed: [i for i, (n, s) in jobs.items() if n == f"demo-s{seed}" and s == "RUNNING"] for seed in (0, 1)
    }
    assert len(job[0]) == len(job[1]) == 1, jobs
    sc.requeued_at = time.time()
    bed.run("scancel", "--signal=USR2", job[0][0])
    bed.run("scontrol", "requeue", job[1][0])
    for seed in (0, 1):
        sc.waiting[seed] = _until(
            f"the requeued record of seed {seed}",
            lambda seed=seed: _record_with_status(sc.work / "a" / "runs", seed, "requeued"),
            timeout=120,
        )


def _cancel_second_run(sc: Scenario, bed: Testbed, proc: Proc) -> None:
    """``scancel`` sweep C's second run once it trains (its first has a config error)."""
    array = _until(
        "sweep C's submission", lambda: (re.findall(r"as SLURM job (\d+)", proc.stdout) or [None])[0]
    )
    sc.cancelled_job = f"{array}_1"
    _until(
        "sweep C's second run to train", lambda: list((sc.work / "c" / "ckpt").glob("demo/*/seed7/last.ckpt"))
    )
    bed.run("scancel", sc.cancelled_job)


@pytest.fixture(scope="module")
def scenario(bed: Testbed, tmp_path_factory) -> Scenario:
    sc = Scenario(work=tmp_path_factory.mktemp("slurm-scenario"))
    try:
        sc.start(bed, "refused", "-m", *TINY, "hydra/launcher=slurm", "seed=0", *sc.dirs("refused"))
        sc.start(bed, "a", "-m", *TINY, *FITS, "seed=0,1", *sc.dirs("a"))
        sc.start(
            bed,
            "reference",
            *TINY,
            "seed=1",
            f"results_dir={sc.work}/ref/runs",
            f"ckpt_dir={sc.work}/ref/ckpt",
            f"hydra.run.dir={sc.work}/ref/out",
        )
        _requeue_both(sc, bed)
        c = sc.start(bed, "c", "-m", *TINY, *FITS, "seed=7", "data.batch_size=0,16", *sc.dirs("c"))
        _cancel_second_run(sc, bed, c)
        for p in sc.procs.values():
            p.wait()
        sc.names |= {n for n, _ in _jobs(bed).values()}
    finally:
        for p in sc.procs.values():
            if p.popen.poll() is None:
                p.popen.kill()
    return sc


def test_impossible_request_is_refused_at_start_up_in_one_line(scenario: Scenario) -> None:
    p = scenario.procs["refused"]
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.rc == 2, p.stderr
    assert len(lines) == 1 and lines[0].startswith(
        "error: SLURM partition 'debug' can never run this request:"
    )
    for fix in (
        "SLURM_CPUS=2 (hydra.launcher.cpus_per_task=2)",
        "SLURM_GPUS=0 (hydra.launcher.gpus_per_node=0)",
        "SLURM_TIME=60 (hydra.launcher.timeout_min=60)",
        "SLURM_MEM=",
    ):
        assert fix in lines[0]
    assert not (scenario.work / "refused" / "sweep" / ".submitit").exists()  # nothing was submitted


def test_sweep_warns_without_accounting_and_completes(scenario: Scenario) -> None:
    a = scenario.procs["a"]
    assert a.rc == 0, a.stderr[-3000:]
    assert "SLURM accounting is off" in a.stdout and "scontrol show job" in a.stdout
    for seed in (0, 1):
        assert _record(scenario.work / "a" / "runs", seed)["status"] == "completed"
    assert {"demo-s0", "demo-s1"} <= scenario.names  # jobs carry the experiment and seed


@pytest.mark.parametrize("seed, how", [(0, "SystemExit: -1"), (1, "SIGTERM")])
def test_requeued_run_is_recorded_as_requeued_then_resumes(scenario: Scenario, seed: int, how: str) -> None:
    """Seed 0: submitit's own requeue (USR2, as before a time limit); seed 1: ``scontrol requeue``."""
    waiting = scenario.waiting[seed]
    assert waiting["status"] == "requeued" and how in waiting["error"]
    assert [s["end"] for s in waiting["stints"]] == ["requeued"]
    done = _record(scenario.work / "a" / "runs", seed)
    assert [s["end"] for s in done["stints"]] == ["requeued", "completed"]
    assert done["stints"][0]["slurm_job"] == done["stints"][1]["slurm_job"]  # the same job, run again
    assert done["wall_time_s"] == pytest.approx(sum(s["wall_time_s"] for s in done["stints"]), abs=0.01)
    gap = _seconds(done["stints"][1]["started"]) - _seconds(done["stints"][0]["finished"])
    print(
        f"\nrequeue cost, seed {seed} ({how}): {gap:.0f} s from the end of the interrupted stint to the "
        "resumed stint's training"
    )
    assert gap >= 110  # SLURM holds a requeued job (BeginTime) for about 2 minutes


def _seconds(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def test_resumed_run_equals_an_uninterrupted_one(scenario: Scenario) -> None:
    assert scenario.procs["reference"].rc == 0, scenario.procs["reference"].stderr[-3000:]
    resumed, reference = _record(scenario.work / "a" / "runs", 1), _record(scenario.work / "ref" / "runs", 1)
    assert resumed["config_key"] == reference["config_key"]
    for key in ("best_epoch", "best_val_acc", "summary", "metrics", "train"):
        assert resumed[key] == reference[key], key
    (a,) = (scenario.work / "a" / "ckpt").glob("demo/*/seed1/best.ckpt")
    (b,) = (scenario.work / "ref" / "ckpt").glob("demo/*/seed1/best.ckpt")
    sa, sb = (torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in (a, b))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_failed_runs_are_one_line_each(scenario: Scenario) -> None:
    c = scenario.procs["c"]
    lines = [ln for ln in c.stderr.splitlines() if ln.strip()]
    assert c.rc == 1, c.stderr[-3000:]
    assert "Traceback" not in c.stderr and "UncompletedJobError" not in c.stderr
    array = scenario.cancelled_job.split("_")[0]
    assert len(lines) == 3, lines
    assert (
        lines[0].startswith(f"failed: demo seed 7 (SLURM job {array}_0): error: ")
        and "batch_size" in lines[0]
    )
    assert lines[1].startswith(
        f"failed: demo seed 7 (SLURM job {array}_1): was cancelled (SLURM state CANCELLED"
    )
    assert lines[2].startswith("error: 2 of 2 runs of the sweep failed")
    log0 = Path(lines[0].rsplit("; log: ", 1)[1])
    assert "Traceback" in log0.read_text()  # the traceback is kept in the job's log
    # the cancelled run stopped by SIGTERM while training: not failed, it resumes when relaunched
    assert _record(scenario.work / "c" / "runs", 7)["status"] == "interrupted"

"""Hostile but realistic inputs and faults against ``train.py`` (issue 13): each bad input ends with
exit status 2, one line ``error: …`` on stderr that names the problem and the fix, no traceback, no
record and nothing half-written; each fault (a crafted pickle, a full disk, a truncated checkpoint or
record, a second launch of a running run) is refused or repaired as stated.

The command is replayed in-process through ``train.py``'s own entry point (``train.cli()``: the
override precheck, Hydra, :func:`bioreg.app.cli.run_or_explain`), with ``sys.argv`` set as on the command
line, so exit status and stderr are the ones a user sees; one test also runs ``python train.py`` in
a subprocess to show it is the same there.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from helpers.configs import REPO, compose
from helpers.runif import RunIf

FAST = ["+experiment=demo", "model.width=8", "model.width2=8", "model.layer1_width=4", "trainer.max_epochs=1",
        "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "eval=clean", "eval.progress=false",
        "logger=none", "trainer.enable_progress_bar=false"]


def _train_module():
    spec = importlib.util.spec_from_file_location("train", REPO / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TRAIN = _train_module()


@pytest.fixture
def launch(tmp_path, monkeypatch, capsys):
    """``launch(*overrides)`` → (exit status, stderr lines, stdout) of ``train.py <overrides>`` with the
    run's folders under ``tmp_path`` (results/, ckpt/, out/)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def go(*args: str, dirs: bool = True):
        extra = [f"results_dir={tmp_path}/results", f"ckpt_dir={tmp_path}/ckpt",
                 f"hydra.run.dir={tmp_path}/out"]
        monkeypatch.setattr(sys, "argv", ["train.py", *args, *(extra if dirs else [])])
        GlobalHydra.instance().clear()
        capsys.readouterr()
        try:
            TRAIN.cli()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            GlobalHydra.instance().clear()
            for h in root.handlers[:]:
                if h not in saved[0]:
                    root.removeHandler(h)
                    h.close()
            root.setLevel(saved[1])
        out = capsys.readouterr()
        return code, [line for line in out.err.splitlines() if line.strip()], out.out

    return go


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file()) if folder.exists() else []


def assert_refused(result, *phrases: str, tmp_path: Path | None = None) -> str:
    """Exit 2, exactly one stderr line starting ``error:`` that contains ``phrases``, no traceback, and
    (with ``tmp_path``) no record or checkpoint written."""
    code, err, out = result
    assert code == 2, (code, err[-5:])
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in out and "Traceback" not in err[0]
    for p in phrases:
        assert p in err[0], (p, err[0])
    if tmp_path is not None:
        assert not [f for f in files(tmp_path / "results")], files(tmp_path / "results")
        assert not [f for f in files(tmp_path / "ckpt") if f.endswith((".ckpt", ".json"))]
    return err[0]


# ---- 1. untrusted pickles ---------------------------------------------------------------------------------

class _Payload:
    """Unpickling this calls ``Path(marker).touch()``: the proof that a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def evil_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(1)}, "loops": {}, "x": _Payload(marker)}, path)
    return path


def test_payload_pickle_is_a_real_payload(tmp_path):
    """Control: loading the file without weights_only does run the payload."""
    marker = tmp_path / "pwned"
    evil_checkpoint(tmp_path / "evil.ckpt", marker)
    torch.load(tmp_path / "evil.ckpt", weights_only=False)
    assert marker.exists()


def test_ckpt_with_a_payload_is_refused_without_running(launch, tmp_path):
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    line = assert_refused(launch(*FAST, f"ckpt={evil}"), "refused to load", "weights_only=True",
                          tmp_path=tmp_path)
    # names what it would have called (getattr(Path, "touch"))
    assert "it holds a reference to getattr" in line
    assert not marker.exists()


def test_every_checkpoint_reader_refuses_a_payload(tmp_path):
    """safe_load, the Lightning resume path (AtomicCheckpointIO, even when asked for weights_only=False),
    load_for_eval and resume_point (a crafted last.ckpt is moved aside, never run)."""
    from bioreg.app.ckpt_io import (
        AtomicCheckpointIO,
        UnsafeCheckpointError,
        load_for_eval,
        resume_point,
        safe_load,
    )

    marker = tmp_path / "pwned"
    evil = evil_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError):
        safe_load(evil)
    with pytest.raises(UnsafeCheckpointError):
        AtomicCheckpointIO().load_checkpoint(evil, weights_only=False)
    with pytest.raises(UnsafeCheckpointError):
        load_for_eval(torch.nn.Linear(1, 1), evil)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    evil_checkpoint(run_dir / "last.ckpt", marker)
    assert resume_point(run_dir) is None
    assert not (run_dir / "last.ckpt").exists() and len(list(run_dir.glob("last.ckpt.corrupt-*"))) == 1
    assert not marker.exists()


def test_no_unsafe_torch_load_in_the_package():
    """`grep -rn "torch.load" src scripts train.py` shows only weights_only=True calls, and nothing
    unpickles a checkpoint by hand."""
    out = subprocess.run(["grep", "-rn", "torch.load", "src", "scripts", "train.py"], cwd=REPO,
                         capture_output=True, text=True).stdout
    calls = [line for line in out.splitlines() if "torch.load(" in line]
    assert calls and all("weights_only=True" in line for line in calls), calls
    out = subprocess.run(["grep", "-rn", "pickle.load", "src", "scripts", "train.py"], cwd=REPO,
                         capture_output=True, text=True).stdout
    assert out == "", out


# ---- 2-5. bad values refused at start-up ----------------------------------------------------------------

@pytest.mark.parametrize("override, phrase", [
    ("trainer.max_epochs=0", "trainer.max_epochs must be an integer >= 1"),
    ("trainer.max_epochs=-1", "trainer.max_epochs must be an integer >= 1"),
    ("trainer.fast_dev_run=-1", "trainer.fast_dev_run must be"),
    ("trainer.limit_train_batches=0", "trainer.limit_train_batches must be"),
    ("trainer.max_time=00:00:00:00", "trainer.max_time must be a positive duration"),
    ("trainer.max_time=soon", "trainer.max_time must be 'DD:HH:MM:SS'"),
    ("seed=-1", "seed must be an integer (0 is a real seed) from 0 to 4294967295"),
    ("seed=4294967296", "seed must be an integer (0 is a real seed) from 0 to 4294967295"),
    ("optim.lr=abc", "optim.lr"),
    ("trainer.max_epochs=two", "trainer.max_epochs"),
    ("data.batch_size=-1", "batch_size=-1 is invalid; valid values: integers >= 1"),
    # already handled before issue 13, kept so: misspelt key, bad parameter, on_existing value
    ("trainer.max_epoch=3", "did you mean 'max_epochs'"),
    ("reg.cg.tau=-1", "tau"),
    ("on_existing=never", "on_existing must be one of skip, overwrite, error"),
])
def test_bad_value_is_one_line_exit_2_and_no_record(launch, tmp_path, override, phrase):
    assert_refused(launch(*FAST, override), phrase, tmp_path=tmp_path)


@pytest.mark.parametrize("overrides, phrases", [
    (["optim.optimizer.lr=-1"], ["optim.optimizer.lr must be a number > 0; got -1"]),
    (["optim.lr=-1"], ["unknown config key 'optim.lr'", "since bioreg 0.2 it is optim.optimizer.lr",
                       "Valid keys of optim: decay_bias_and_norm, optimizer, scheduler"]),
    (["optim.optimizer._target_=torch.optim.RMSProp"],
     ["optim.optimizer._target_='torch.optim.RMSProp' is not an optimizer", "valid: torch.optim.ASGD",
      "torch.optim.RMSprop"]),
    (["optim=rmsprop"], ["unknown optim option 'rmsprop'", "valid options: adam, cosine, dutta2019"]),
    (["optim=sgd", "optim.optimizer.momentun=0.5"], ["unknown config key 'optim.optimizer.momentun'",
                                                     "did you mean 'momentum'"]),
    (["optim=sgd", "optim.optimizer.nesterov=true", "optim.optimizer.momentum=0"],
     ["optim.optimizer: its class refuses", "Nesterov momentum requires a momentum"]),
    (["optim.scheduler.name=cosine"], ["optim.scheduler.name",
                                       "optim/scheduler=<constant, multistep or cosine>"]),
    (["optim/scheduler=step"], ["unknown optim/scheduler option 'step'",
                                "valid options: constant, cosine, multistep"]),
    (["optim/scheduler=constant", "optim.scheduler.milestones=[3]"],
     ["cannot override optim.scheduler.milestones: the chosen schedule is constant",
      "optim/scheduler=<option> (options: constant, cosine, multistep)"]),
    (["optim/scheduler=multistep"], ["optim.scheduler.milestones is required",
                                     "optim.scheduler.milestones=<value>"]),
    (["optim/scheduler=cosine", "optim.scheduler._target_=torch.optim.lr_scheduler.ReduceLROnPlateau"],
     ["is not an LR scheduler", "valid: torch.optim.lr_scheduler.ChainedScheduler"]),
])
def test_bad_optimizer_or_schedule_is_one_line_exit_2_at_start_up(launch, tmp_path, overrides, phrases):
    """The optimizer and the schedule are checked like every other group (keys by the signature of their
    ``_target_``, values by building them once) before anything is written, not inside ``fit``."""
    assert_refused(launch(*FAST, *overrides), *phrases, tmp_path=tmp_path)


def test_missing_data_is_one_line_exit_2(launch, tmp_path):
    assert_refused(launch(*FAST, "data=cifar10", f"data_dir={tmp_path}/nodata"), "CIFAR-10",
                   tmp_path=tmp_path)


# ---- 6. unknown group options and keys the chosen options do not set ---------------------------------------

@pytest.mark.parametrize("override, phrases", [
    ("reg=[nosuchreg]", ["unknown reg option 'nosuchreg'", "valid options:", "cg", "dropblock"]),
    ("model=resnet21", ["unknown model option 'resnet21'", "resnet20"]),
    ("reg.cg.tua=2", ["unknown config key 'reg.cg.tua'", "did you mean 'tau'"]),
    ("reg.cg.sigma2=2", ["reg.cg.sigma2", "Valid keys of reg.cg"]),
    ("reg.cp.tau=2", ["cannot override reg.cp.tau", "reg has no entry 'cp'", "entries: cg", "reg=<option>"]),
    ("+sweep=no_such_table", ["unknown sweep option 'no_such_table'", "table_2_5"]),
    # Hydra's own group: the project's launchers and those Hydra and its plugins register
    ("hydra/launcher=slurmm",
     ["unknown hydra/launcher option 'slurmm'", "slurm", "local", "basic", "submitit_slurm"]),
])
def test_unknown_option_or_key_names_the_valid_ones(launch, tmp_path, override, phrases):
    assert_refused(launch(*FAST, override), *phrases, tmp_path=tmp_path)


def test_key_the_option_does_not_set_but_its_target_takes_asks_for_plus(launch, tmp_path):
    """Hydra's "Could not override" for a parameter the regularizer accepts but its YAML leaves unset
    (NormOut's ``temperature``, used only by the softmax variants): the message says to add it with '+'."""
    assert "temperature" not in compose(["reg=normout_spatialmax"]).reg.normout48
    assert_refused(launch(*FAST, "reg=normout_spatialmax", "reg.normout48.temperature=1"),
                   "reg.normout48.temperature is not set by the chosen reg.normout48 option",
                   "add it with +reg.normout48.temperature=1", tmp_path=tmp_path)


# ---- 7. a fine-tuning checkpoint that is not one
# ------------------------------------------------------------

def test_ckpt_text_file_is_refused_at_start_up(launch, tmp_path):
    txt = tmp_path / "notes.ckpt"
    txt.write_text("these are not weights\n")
    assert_refused(launch(*FAST, f"ckpt={txt}"), "not a readable PyTorch checkpoint", tmp_path=tmp_path)


def test_ckpt_of_another_model_is_refused_at_start_up(launch, tmp_path):
    from hydra.utils import instantiate

    other = instantiate(compose(["model=resnet20"]).model)
    path = tmp_path / "resnet20.ckpt"
    torch.save({"state_dict": {f"model.net.{k}": v for k, v in other.state_dict().items()}}, path)
    assert_refused(launch(*FAST, f"ckpt={path}"), "does not fit model", tmp_path=tmp_path)
    # same model, other widths: the keys match, the shapes do not
    narrow = instantiate(
        compose([*FAST[:2], "model.width=4", "model.width2=8", "model.layer1_width=4"]).model)
    torch.save(narrow.state_dict(), path)
    assert_refused(launch(*FAST, f"ckpt={path}"), "shape mismatch", tmp_path=tmp_path)


# ---- 8. places the run cannot write
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("place, fix",
                         [("results_dir", "results_dir=<folder>"), ("ckpt_dir", "ckpt_dir=<folder>")])
def test_unwritable_place_is_refused_at_start_up(launch, tmp_path, place, fix):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    dirs = {"results_dir": f"{tmp_path}/results", "ckpt_dir": f"{tmp_path}/ckpt", place: f"{blocker}/sub"}
    line = assert_refused(
        launch(*FAST, *(f"{k}={v}" for k, v in dirs.items()), f"hydra.run.dir={tmp_path}/out",
                                 dirs=False), f"{place} is not writable", fix)
    assert "a_file" in line
    assert files(tmp_path / "results") == [] and not list((tmp_path / "ckpt").rglob("*.ckpt"))


def test_unwritable_hydra_run_dir_is_refused_before_hydra_starts(launch, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert_refused(launch(*FAST, f"results_dir={tmp_path}/results", f"ckpt_dir={tmp_path}/ckpt",
                          f"hydra.run.dir={blocker}/out", dirs=False),
                   "hydra.run.dir is not writable", "a_file", "hydra.run.dir=<folder>", tmp_path=tmp_path)


def test_unwritable_default_hydra_run_dir_is_refused_before_hydra_starts(launch, tmp_path, monkeypatch):
    """No hydra.run.dir given: the fixed part of the config's default (``outputs/`` of
    ``outputs/${name}/${now:...}``) is probed, here a file standing where that folder would be."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").write_text("")
    assert_refused(launch(*FAST, f"results_dir={tmp_path}/results", f"ckpt_dir={tmp_path}/ckpt", dirs=False),
                   "hydra.run.dir is not writable", "outputs", "hydra.run.dir=<folder>",
                   tmp_path=tmp_path)


@RunIf(skip_root=True)
def test_read_only_results_dir_is_refused_at_start_up(launch, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_refused(
            launch(*FAST, f"results_dir={ro}", f"ckpt_dir={tmp_path}/ckpt", f"hydra.run.dir={tmp_path}/out",
                              dirs=False), "results_dir is not writable")
    finally:
        ro.chmod(0o755)


# ---- 9. a save that fails leaves the previous checkpoint
# ---------------------------------------------------------

def test_failed_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    import bioreg.io as io_mod
    from bioreg.app.ckpt_io import AtomicCheckpointIO, safe_load

    cio, path = AtomicCheckpointIO(), tmp_path / "best.ckpt"
    cio.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.ones(1000)}}, path)

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_mod.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        cio.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.zeros(1000)}}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["best.ckpt"]  # no temp file left either
    assert safe_load(path)["epoch"] == 1


def test_trainer_saves_and_loads_through_the_atomic_safe_io(tmp_path):
    from bioreg.app.ckpt_io import AtomicCheckpointIO
    from bioreg.app.run import build_run, prepare_places, validate

    plan = validate(compose([*FAST, f"results_dir={tmp_path}/r", f"ckpt_dir={tmp_path}/c"]))
    prepare_places(plan)
    trainer = build_run(plan).trainer
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


# ---- 10. truncated last.ckpt
# -------------------------------------------------------------------------------------

def _training_ckpt(path: Path, step: int) -> None:
    torch.save({"epoch": 0, "global_step": step, "state_dict": {"w": torch.zeros(2)}, "loops": {}}, path)


def test_truncated_last_ckpt_is_moved_aside_and_the_newest_readable_one_resumed(tmp_path, caplog):
    from bioreg.app.ckpt_io import resume_point

    _training_ckpt(tmp_path / "last.ckpt", 30)
    _training_ckpt(tmp_path / "best.ckpt", 20)
    assert resume_point(tmp_path) == tmp_path / "last.ckpt"
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="bioreg"):
        assert resume_point(tmp_path) == tmp_path / "best.ckpt"
    (aside,) = tmp_path.glob("last.ckpt.corrupt-*")
    assert aside.read_bytes() == data[: len(data) // 2]
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "last.ckpt is unreadable" in msg and aside.name in msg and "resuming from best.ckpt" in msg
    (tmp_path / "best.ckpt").write_bytes(b"")
    _training_ckpt(tmp_path / "last.ckpt", 40)
    (tmp_path / "last.ckpt").write_bytes(b"PK\x03\x04")
    assert resume_point(tmp_path) is None  # nothing readable: from scratch
    assert len(list(tmp_path.glob("last.ckpt.corrupt-*"))) == 2


# ---- 13. two launches of one run
# -------------------------------------------------------------------------------

def test_second_launch_of_a_running_run_exits_2_and_touches_nothing(launch, tmp_path):
    from bioreg.app.run import validate
    from bioreg.app.runlock import RunLock

    plan = validate(compose([*FAST, f"results_dir={tmp_path}/results", f"ckpt_dir={tmp_path}/ckpt"]))
    with RunLock(plan.paths.ckpt, plan.label):
        before = files(tmp_path / "ckpt")
        line = assert_refused(launch(*FAST), "is already running", f"pid {os.getpid()}", "started",
                              tmp_path=tmp_path)
        assert "host " in line
        assert files(tmp_path / "ckpt") == before == [
            str((plan.paths.ckpt / "run.lock").relative_to(tmp_path / "ckpt"))]
    assert files(tmp_path / "ckpt") == []  # released


def _lock_file(folder: Path, **holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    info = {"host": "elsewhere", "pid": 1, "pid_start": None, "started": "2026-01-01T00:00:00+00:00",
            "slurm_job": None, "token": "t0", **holder}
    (folder / "run.lock").write_text(json.dumps(info))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_staleness_rules(tmp_path, monkeypatch):
    import socket

    from bioreg.app.runlock import RunLock, RunLockedError

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    here = socket.gethostname()
    # a live holder on this host (this very process): refused
    _lock_file(tmp_path / "a", host=here, pid=os.getpid())
    with pytest.raises(RunLockedError, match=r"already running \(host .*, pid \d+, started 2026-01-01"):
        RunLock(tmp_path / "a", "run x").acquire()
    # its process is gone (killed with SIGKILL, say): taken over
    _lock_file(tmp_path / "b", host=here, pid=_dead_pid())
    lock = RunLock(tmp_path / "b", "run x")
    lock.acquire()
    assert json.loads((tmp_path / "b" / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / "b" / "run.lock").exists()
    # another host, heartbeat fresh: refused; heartbeat older than stale_after_s: taken over
    _lock_file(tmp_path / "c")
    with pytest.raises(RunLockedError):
        RunLock(tmp_path / "c", "run x").acquire()
    old = (tmp_path / "c" / "run.lock").stat().st_mtime - 3600
    os.utime(tmp_path / "c" / "run.lock", (old, old))
    with RunLock(tmp_path / "c", "run x", stale_after_s=600):
        pass
    # SLURM requeue: the same job id on another node takes over at once
    _lock_file(tmp_path / "d", slurm_job="4242")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    with RunLock(tmp_path / "d", "run x"):
        assert json.loads((tmp_path / "d" / "run.lock").read_text())["slurm_job"] == "4242"
    monkeypatch.setenv("SLURM_JOB_ID", "4243")  # another job of the same run: the holder may be alive
    _lock_file(tmp_path / "e", slurm_job="4242")
    with pytest.raises(RunLockedError):
        RunLock(tmp_path / "e", "run x").acquire()


def test_lock_heartbeat_keeps_a_long_run_fresh(tmp_path):
    import time

    from bioreg.app.runlock import RunLock

    with RunLock(tmp_path, "run x", heartbeat_s=0.05) as lock:
        old = time.time() - 3600
        os.utime(lock.path, (old, old))
        time.sleep(0.3)
        assert time.time() - lock.path.stat().st_mtime < 60


# ---- 11 (+10 end to end). faults between runs, on a real tiny run
# -------------------------------------------------

@pytest.mark.slow
def test_truncated_record_and_last_ckpt_are_set_aside_and_the_run_completes(launch, tmp_path):
    code, err, out = launch(*FAST)
    assert code == 0, err[-5:]
    (rec,) = (tmp_path / "results").rglob("seed0.json")
    first = json.loads(rec.read_text())
    assert first["status"] == "completed"
    # 11: a truncated record of the same run is not "done": moved aside, the run runs (resumes) again
    text = rec.read_text()
    rec.write_text(text[: len(text) // 3])
    code, err, out = launch(*FAST)
    assert code == 0, err[-5:]
    (aside,) = rec.parent.glob("seed0.json.corrupt-*")
    assert aside.read_text() == text[: len(text) // 3]
    assert json.loads(rec.read_text())["status"] == "completed"
    assert "is unreadable" in out and "moved aside" in out
    # 10: a truncated last.ckpt: moved aside, the run resumes from best.ckpt
    (last,) = (tmp_path / "ckpt").rglob("last.ckpt")
    data = last.read_bytes()
    last.write_bytes(data[:1000])
    code, err, out = launch(*FAST, "on_existing=overwrite")
    assert code == 0, err[-5:]
    assert len(list(last.parent.glob("last.ckpt.corrupt-*"))) == 1
    assert "last.ckpt is unreadable" in out and "resuming from best.ckpt" in out
    assert json.loads(rec.read_text())["status"] == "completed"
    assert "Total FLOPs" not in out and "Trainable params" in out
    # already handled: a completed run is skipped; on_existing=error refuses with one line
    code, err, out = launch(*FAST)
    assert code == 0 and "skip:" in out
    assert_refused(launch(*FAST, "on_existing=error"), "already has a record", "on_existing=skip")
    assert not list((tmp_path / "ckpt").rglob("run.lock"))


@pytest.mark.slow
def test_sigkilled_run_leaves_a_lock_that_the_relaunch_takes_over(launch, tmp_path):
    """SIGKILL cannot release the lock: the relaunch on the same host finds its holder's pid gone,
    takes the lock over (one warning line) and resumes to a completed record."""
    import time

    args = [*FAST, "trainer.max_epochs=30", "trainer.deterministic=true", "trainer.accelerator=cpu"]
    dirs = [f"results_dir={tmp_path}/results", f"ckpt_dir={tmp_path}/ckpt", f"hydra.run.dir={tmp_path}/out"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args, *dirs], cwd=REPO, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 500
        while not list(
            (tmp_path / "ckpt").rglob("last.ckpt")) and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert p.poll() is None, "the run ended before it could be killed"
        p.kill()
    finally:
        p.wait()
    (lock,) = (tmp_path / "ckpt").rglob("run.lock")
    assert json.loads(lock.read_text())["pid"] == p.pid
    code, err, out = launch(*args)
    assert code == 0, err[-5:]
    assert "took over the lock" in out and f"pid {p.pid}" in out and "is gone" in out
    assert "resuming from" in out
    (rec,) = (tmp_path / "results").rglob("seed0.json")
    assert json.loads(rec.read_text())["status"] == "completed"
    assert not lock.exists()


@pytest.mark.slow
def test_train_py_subprocess_bad_input_is_one_line_exit_2(tmp_path):
    """The real command line, not the in-process replay: same status, same single line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    out = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *FAST, "seed=-1", f"results_dir={tmp_path}/r",
                          f"ckpt_dir={tmp_path}/c", f"hydra.run.dir={tmp_path}/o"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert err == [err[0]] and err[0].startswith(
        "error: seed must be an integer (0 is a real seed) from 0 to"), err
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "r").exists()


# ---- log lines once; no "FLOPs 0"
# --------------------------------------------------------------------------------

def test_lightning_lines_are_printed_once_under_hydra(monkeypatch):
    """Under Hydra the root logger has a console handler; Lightning's own one (added at import) is
    dropped so that each line is printed once, and Lightning's records reach Hydra's handlers."""
    import lightning  # noqa: F401  (adds its console handler)

    from bioreg.app.cli import _one_console_handler

    root = logging.getLogger()
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    light = logging.getLogger("lightning")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # restored after the test
        monkeypatch.setattr(logging.getLogger(name), "handlers", list(logging.getLogger(name).handlers))
        monkeypatch.setattr(logging.getLogger(name), "propagate", logging.getLogger(name).propagate)
    if not any(type(h) is logging.StreamHandler for h in light.handlers):  # removed by an earlier launch
        light.handlers.append(logging.StreamHandler())  # as `import lightning` adds it
    h = Collect()
    root.addHandler(h)
    try:
        _one_console_handler()
        assert not any(type(h) is logging.StreamHandler for h in light.handlers)
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("Seed set to 7")
        assert seen.count("Seed set to 7") == 1
    finally:
        root.removeHandler(h)


def test_model_summary_has_no_flops(capsys):
    from bioreg.lit.callbacks.model_summary import ModelSummaryNoFlops

    data = [(" ", ["0"]), ("Name", ["model"]), ("Type", ["Classifier"]), ("Params", ["83.3 K"]),
            ("Mode", ["train"]), ("FLOPs", ["0"])]
    ModelSummaryNoFlops.summarize(data, 83300, 83300, 0.333, {"train": 34, "eval": 0}, total_flops=0)
    out = capsys.readouterr().out
    assert "Classifier" in out and "83.3 K" in out and "FLOPs" not in out


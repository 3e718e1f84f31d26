"""Fault tolerance of a run (src/bioreg/run.py, src/bioreg/resume.py): kill with SIGTERM, relaunch, compare.

A tiny digits run (CPU, ``trainer.deterministic=true``, 3 epochs of 3 batches) is trained
uninterrupted, and again with a callback that sends SIGTERM to the process at the end of
epoch 1 (Lightning's signal handler turns it into ``SIGTERMException`` after the epoch's
``last.ckpt`` is written, as on a SLURM preemption). Relaunching the same config resumes from
``last.ckpt`` and must end with exactly the same numbers and weights. A second variant kills in
the middle of epoch 1 (after its second batch), losing that partial epoch: the relaunch resumes
from epoch 0's ``last.ckpt`` and must still end bit-identical. A control run without the
RNG-state callback shows that the comparison can fail.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import bioreg.resume
import bioreg.run as run_mod
from bioreg.results.records import RecordStore, config_key

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = [
    "+experiment=demo", "model=allconvnet_small", "model.width=8", "model.width2=8", "model.layer1_width=4",
    "data.batch_size=16", "trainer.max_epochs=3", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
    "eval=clean", "eval.progress=false", "logger=none", "trainer.enable_progress_bar=false",
    "trainer.deterministic=true", "trainer.accelerator=cpu",
]
KILL_AFTER_EPOCH = 1
pytestmark = pytest.mark.timeout(240)


def cfg_for(tmp: Path, *extra: str, hydra: bool = False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*TINY, f"results_dir={tmp}/runs", f"ckpt_dir={tmp}/ckpt", *extra],
                       return_hydra_config=hydra)


class SigtermMidEpoch(L.Callback):
    """Send SIGTERM to this process after training batch ``batch`` of epoch ``epoch`` (both 0-based).

    Lightning's handler only sets a flag; the training loop raises ``SIGTERMException`` right after
    this batch, so the rest of the epoch (and its ``last.ckpt``) never happens: the relaunch must
    redo the whole epoch from the previous epoch's checkpoint.
    """

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch
        self.fired_at_step: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.fired_at_step = trainer.global_step
            os.kill(os.getpid(), signal.SIGTERM)


class SigtermAfterEpoch(L.Callback):
    """Send SIGTERM to this process at the end of training epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared CPU cores: keep the tiny runs fast and their arithmetic fixed
    yield
    torch.set_num_threads(n)


def record(tmp: Path) -> tuple[Path, dict]:
    (p,) = list((tmp / "runs").rglob("seed0.json"))
    return p, json.loads(p.read_text())


def weights(tmp: Path, name: str = "last.ckpt") -> dict[str, torch.Tensor]:
    (p,) = list((tmp / "ckpt").rglob(name))
    return torch.load(p, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: the same tiny run, never interrupted (shared by the tests below)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    a = tmp_path_factory.mktemp("uninterrupted")
    run_mod.run(cfg_for(a))
    torch.set_num_threads(n)
    return a


def kill_and_resume(tmp: Path, monkeypatch, killer: L.Callback | None = None,
                    ckpt_epoch: int = KILL_AFTER_EPOCH) -> dict:
    """Run with ``killer`` (default: SIGTERM at the end of epoch ``KILL_AFTER_EPOCH``), check the
    failed record and that ``last.ckpt`` is the one of epoch ``ckpt_epoch``, then relaunch."""
    killer = killer if killer is not None else SigtermAfterEpoch(KILL_AFTER_EPOCH)
    orig = run_mod._callbacks
    with monkeypatch.context() as m:
        m.setattr(run_mod, "_callbacks", lambda cfg, paths: [*orig(cfg, paths), killer])
        with pytest.raises(SystemExit) as exc:
            run_mod.run(cfg_for(tmp))
    # Lightning's SIGTERMException (a SystemExit with status 0) becomes exit status 143 = 128 + SIGTERM
    assert exc.value.code == 143 and type(exc.value.__cause__).__name__ == "SIGTERMException"
    _, failed = record(tmp)
    assert failed["status"] == "failed" and "SIGTERM" in failed["error"]
    (last,) = list((tmp / "ckpt").rglob("last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == ckpt_epoch
    run_mod.run(cfg_for(tmp))  # relaunch: the failed record does not count, last.ckpt is resumed
    return failed


def test_killed_run_resumes_to_the_same_result(uninterrupted: Path, tmp_path: Path, monkeypatch) -> None:
    a, b = uninterrupted, tmp_path / "b"
    kill_and_resume(b, monkeypatch)
    _, ra = record(a)
    _, rb = record(b)
    assert ra["status"] == rb["status"] == "completed"
    assert ra["config_key"] == rb["config_key"]
    for k in ("best_epoch", "best_val_acc", "train", "metrics", "summary"):
        assert ra[k] == rb[k], k  # exact equality: CPU, deterministic
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_run_killed_mid_epoch_resumes_to_the_same_result(uninterrupted: Path, tmp_path: Path, monkeypatch) -> None:
    """SIGTERM after batch 1 of the 3 batches of epoch 1 (0-based): that partial epoch is lost (no
    checkpoint mid-epoch), the relaunch resumes from epoch 0's ``last.ckpt`` and redoes epoch 1 with
    the data order, noise and weights the uninterrupted run had: the same final numbers, exactly.
    Measured: 1.2 s at load ~3 (2 tiny runs; the reference run is shared with the test above)."""
    a, b = uninterrupted, tmp_path / "b"
    killer = SigtermMidEpoch(epoch=1, batch=1)
    failed = kill_and_resume(b, monkeypatch, killer=killer, ckpt_epoch=0)
    assert killer.fired_at_step == 3 + 2  # killed after 2 of epoch 1's 3 steps; last.ckpt holds step 3
    # the failed record says which signal stopped the run, and where (issue 19)
    f = failed["failure"]
    assert (f["signal"], f["stage"], f["epoch"], f["batch"], f["batches"], f["global_step"]) == (
        "SIGTERM", "train", 1, 2, 3, 5)
    assert failed["error"].startswith("killed by SIGTERM during training: epoch 1 of ")
    assert "after batch 2 of 3 (global step 5)" in failed["error"]
    _, ra = record(a)
    _, rb = record(b)
    assert ra["status"] == rb["status"] == "completed"
    for k in ("best_epoch", "best_val_acc", "train", "metrics", "summary"):
        assert ra[k] == rb[k], k  # exact equality: CPU, deterministic
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for name in ("last.ckpt", "best.ckpt"):
        ca, cb = (torch.load(next((t / "ckpt").rglob(name)), map_location="cpu", weights_only=True) for t in (a, b))
        assert (ca["epoch"], ca["global_step"]) == (cb["epoch"], cb["global_step"]), name


def test_without_rng_state_the_resumed_run_diverges(uninterrupted: Path, tmp_path: Path, monkeypatch) -> None:
    """Control: the checkpoint alone (weights, optimizer, loops) does not give the same run."""
    a, b = uninterrupted, tmp_path / "b"
    monkeypatch.setattr(bioreg.resume, "RNGStateCheckpoint", L.Callback)
    kill_and_resume(b, monkeypatch)
    wa, wb = weights(a), weights(b)
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_completed_run_is_skipped_and_its_record_kept(uninterrupted: Path) -> None:
    tmp_path = uninterrupted
    p, rec = record(tmp_path)
    acc = rec["best_val_acc"]
    before = p.read_bytes()
    (last,) = list((tmp_path / "ckpt").rglob("last.ckpt"))
    mtime = last.stat().st_mtime_ns
    assert run_mod.run(cfg_for(tmp_path)) == pytest.approx(acc)  # on_existing=skip (default)
    assert p.read_bytes() == before and last.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="on_existing=skip or on_existing=overwrite"):
        run_mod.run(cfg_for(tmp_path, "on_existing=error"))
    assert RecordStore(tmp_path / "runs").completed(rec["name"], rec["config_key"], 0) is not None


def test_checkpoint_dir_is_the_same_under_any_launcher(tmp_path: Path) -> None:
    """A requeued SLURM job composes the same run identity, so it finds the same last.ckpt."""
    def key(*extra: str) -> str:
        from omegaconf import OmegaConf

        c = OmegaConf.to_container(cfg_for(tmp_path, *extra, hydra=True), resolve=False)
        c.pop("hydra")
        return config_key(OmegaConf.to_container(OmegaConf.create(c), resolve=True))

    local = key()
    assert key("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=5") == local
    assert key("hydra/launcher=local", "hydra.sweeper.max_batch_size=2", "eval=default") == local
    assert key("seed=3") == local  # the seed is a folder level of its own (seed<k>), not part of the key
    assert key("optim.lr=0.01") != local
    paths = run_mod.RunPaths(cfg_for(tmp_path, "seed=3"), local)
    assert paths.ckpt == tmp_path / "ckpt" / "demo" / local / "seed3"

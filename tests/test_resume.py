"""Fault tolerance of a run (src/bioreg/app/run.py, src/bioreg/lit/callbacks/resume.py): kill with SIGTERM, relaunch, compare.

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

from pathlib import Path

import lightning as L
import pytest
import torch

import bioreg.app.run as run_mod
import bioreg.lit.callbacks.resume
from bioreg.results.records import RecordStore, config_key
from helpers.runs import SigtermMidEpoch, cfg_for, kill_and_resume, record, weights

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # every test here trains (~2-10 s a run)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: the same tiny run, never interrupted (shared by the tests below)."""
    a = tmp_path_factory.mktemp("uninterrupted")
    run_mod.run(cfg_for(a))
    return a


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
    kill_and_resume(b, monkeypatch, killer=killer, ckpt_epoch=0)
    assert killer.fired_at_step == 3 + 2  # killed after 2 of epoch 1's 3 steps; last.ckpt holds step 3
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
    monkeypatch.setattr(bioreg.lit.callbacks.resume, "RNGStateCheckpoint", L.Callback)
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
    assert key("optim.optimizer.lr=0.01") != local
    paths = run_mod.RunPaths(cfg_for(tmp_path, "seed=3"), local)
    assert paths.ckpt == tmp_path / "ckpt" / "demo" / local / "seed3"

"""Fault tolerance of a run (src/bioreg/app/run.py, src/bioreg/lit/callbacks/resume.py): kill with SIGTERM,
relaunch, compare.

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

import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

import bioreg.app.run as run_mod
import bioreg.lit.callbacks.resume
from bioreg.results.records import RecordStore, config_key
from helpers.runs import SigtermMidEpoch, cfg_for, kill, kill_and_resume, record, weights

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: the same tiny run, never interrupted (shared by the tests below)."""
    a = tmp_path_factory.mktemp("uninterrupted")
    run_mod.run(cfg_for(a))
    return a


@pytest.mark.slow  # trains (tiny runs, a few seconds each)
def test_killed_run_resumes_to_the_same_result(uninterrupted: Path, tmp_path: Path, monkeypatch) -> None:
    a, b = uninterrupted, tmp_path / "b"
    kill_and_resume(b, monkeypatch)
    _, ra = record(a)
    _, rb = record(b)
    assert ra["status"] == rb["status"] == "completed"
    assert ra["config_key"] == rb["config_key"]
    # the resumed record keeps both stints; its wall time is their sum
    assert [st["end"] for st in rb["stints"]] == ["interrupted", "completed"]
    assert rb["wall_time_s"] == pytest.approx(sum(st["wall_time_s"] for st in rb["stints"]), abs=1e-3)
    assert rb["started"] == rb["stints"][0]["started"] and [st["end"] for st in ra["stints"]] == ["completed"]
    for k in ("best_epoch", "best_val_acc", "train", "metrics", "summary"):
        assert ra[k] == rb[k], k  # exact equality: CPU, deterministic
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow  # trains (tiny runs, a few seconds each)
def test_run_killed_mid_epoch_resumes_to_the_same_result(uninterrupted: Path, tmp_path: Path,
                                                         monkeypatch) -> None:
    """SIGTERM after batch 1 of the 3 batches of epoch 1 (0-based): that partial epoch is lost (no
    checkpoint mid-epoch), the relaunch resumes from epoch 0's ``last.ckpt`` and redoes epoch 1 with
    the data order, noise and weights the uninterrupted run had: the same final numbers, exactly.
    Measured: 1.2 s at load ~3 (2 tiny runs; the reference run is shared with the test above)."""
    a, b = uninterrupted, tmp_path / "b"
    killer = SigtermMidEpoch(epoch=1, batch=1)
    stopped = kill_and_resume(b, monkeypatch, killer=killer, ckpt_epoch=0)
    assert killer.fired_at_step == 3 + 2  # killed after 2 of epoch 1's 3 steps; last.ckpt holds step 3
    # the interrupted record says which signal stopped the run, and where (issue 19)
    f = stopped["failure"]
    assert (f["signal"], f["stage"], f["epoch"], f["batch"], f["batches"], f["global_step"]) == (
        "SIGTERM", "train", 1, 2, 3, 5)
    assert stopped["error"].startswith("killed by SIGTERM during training: epoch 1 of ")
    assert "after batch 2 of 3 (global step 5)" in stopped["error"]
    _, ra = record(a)
    _, rb = record(b)
    assert ra["status"] == rb["status"] == "completed"
    for k in ("best_epoch", "best_val_acc", "train", "metrics", "summary"):
        assert ra[k] == rb[k], k  # exact equality: CPU, deterministic
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for name in ("last.ckpt", "best.ckpt"):
        ca, cb = (torch.load(next((t / "ckpt").rglob(name)), map_location="cpu", weights_only=True)
                  for t in (a, b))
        assert (ca["epoch"], ca["global_step"]) == (cb["epoch"], cb["global_step"]), name


@pytest.mark.slow  # trains (tiny runs, a few seconds each)
def test_without_rng_state_the_resumed_run_diverges(uninterrupted: Path, tmp_path: Path, monkeypatch) -> None:
    """Control: the checkpoint alone (weights, optimizer, loops) does not give the same run."""
    a, b = uninterrupted, tmp_path / "b"
    monkeypatch.setattr(bioreg.lit.callbacks.resume, "RNGStateCheckpoint", L.Callback)
    kill_and_resume(b, monkeypatch)
    wa, wb = weights(a), weights(b)
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow  # trains (tiny runs, a few seconds each)
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
    assert key("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
               "hydra.launcher.timeout_min=5") == local
    assert key("hydra/launcher=local", "hydra.sweeper.max_batch_size=2", "eval=default") == local
    assert key("seed=3") == local  # the seed is a folder level of its own (seed<k>), not part of the key
    assert key("optim.optimizer.lr=0.01") != local
    paths = run_mod.RunPaths(cfg_for(tmp_path, "seed=3"), local)
    assert paths.ckpt == tmp_path / "ckpt" / "demo" / local / "seed3"


@pytest.mark.slow  # trains (three tiny runs)
def test_moved_checkpoint_folder_resumes_to_the_uninterrupted_best_epoch(tmp_path: Path, monkeypatch) -> None:
    """A run killed after 2 of its 3 epochs whose checkpoint folder is then moved (copied to another
    ckpt_dir, the old one deleted) and relaunched there resumes from the copy and ends with the best epoch
    and score of the uninterrupted run. With a learning rate too small to change any prediction, every
    epoch's validation accuracy ties: the best stays the first epoch. Lightning's ModelCheckpoint, which
    forgets the best score when its folder changed, would take the resumed epoch 2 as the best instead."""
    flat = ("optim.optimizer.lr=1e-9",)
    a, b, moved = tmp_path / "a", tmp_path / "b", tmp_path / "elsewhere"
    run_mod.run(cfg_for(a, *flat))
    _, ra = record(a)
    assert ra["status"] == "completed" and ra["best_epoch"] == 0  # the scenario: later epochs only tie
    kill(b, monkeypatch, extra=flat)  # SIGTERM after epoch 1: last.ckpt of epoch 1 in b/ckpt
    shutil.copytree(b / "ckpt", moved)
    shutil.rmtree(b / "ckpt")
    run_mod.run(cfg_for(b, *flat, ckpt_dir=moved))  # resumes from the copy's last.ckpt, trains epoch 2
    _, rb = record(b)
    assert rb["status"] == "completed" and rb["ckpt_dir"].startswith(str(moved))
    assert (rb["best_epoch"], rb["best_val_acc"]) == (ra["best_epoch"], ra["best_val_acc"])
    assert rb["summary"] == ra["summary"]  # evaluated with the same (best) weights
    (best,) = moved.rglob("best.ckpt")
    assert torch.load(best, map_location="cpu", weights_only=True)["epoch"] == ra["best_epoch"]
    (last,) = moved.rglob("last.ckpt")
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 2

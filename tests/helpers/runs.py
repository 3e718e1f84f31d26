"""Tiny real training runs on the bundled digits data, killed and relaunched (tests of fault tolerance).

A run of ``TINY`` (CPU, ``trainer.deterministic=true``, 3 epochs of 3 batches, a few seconds) is the
unit: :func:`cfg_for` composes it with its records and checkpoints under a folder, :func:`kill`
trains it with a callback that sends SIGTERM (Lightning's handler turns it into ``SIGTERMException``
as on a SLURM preemption), :func:`kill_and_resume` relaunches it after that, and :func:`record` /
:func:`weights` read what a run left behind. Used by tests/test_resume.py, tests/test_device_e2e.py.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import bioreg.app.run as run_mod
from helpers.configs import CONF

__all__ = ["TINY", "KILL_AFTER_EPOCH", "cfg_for", "SigtermMidEpoch", "SigtermAfterEpoch", "record", "weights",
           "kill", "kill_and_resume"]

TINY = [
    "+experiment=demo", "model=allconvnet_small", "model.width=8", "model.width2=8", "model.layer1_width=4",
    "data.batch_size=16", "trainer.max_epochs=3", "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "eval=clean", "eval.progress=false", "logger=none", "trainer.enable_progress_bar=false",
    "trainer.deterministic=true", "trainer.accelerator=cpu",
]
KILL_AFTER_EPOCH = 1


def cfg_for(tmp: Path, *extra: str, hydra: bool = False, ckpt_dir: Path | None = None):
    """The config of the tiny run with its records in ``tmp/runs`` and checkpoints in ``tmp/ckpt`` (or
    ``ckpt_dir``)."""
    GlobalHydra.instance().clear()
    ckpt = ckpt_dir if ckpt_dir is not None else tmp / "ckpt"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*TINY, f"results_dir={tmp}/runs", f"ckpt_dir={ckpt}", *extra],
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


def record(tmp: Path) -> tuple[Path, dict]:
    (p,) = list((tmp / "runs").rglob("seed0.json"))
    return p, json.loads(p.read_text())


def weights(tmp: Path, name: str = "last.ckpt", ckpt: str = "ckpt") -> dict[str, torch.Tensor]:
    (p,) = list((tmp / ckpt).rglob(name))
    return torch.load(p, map_location="cpu", weights_only=True)["state_dict"]


def kill(tmp: Path, monkeypatch, killer: L.Callback | None = None, ckpt_epoch: int = KILL_AFTER_EPOCH,
         extra: Sequence[str] = ()) -> dict:
    """Run with ``killer`` (default: SIGTERM at the end of epoch ``KILL_AFTER_EPOCH``), then check the
    interrupted record and that ``last.ckpt`` is the one of epoch ``ckpt_epoch``."""
    killer = killer if killer is not None else SigtermAfterEpoch(KILL_AFTER_EPOCH)
    orig = run_mod._callbacks
    with monkeypatch.context() as m:
        m.setattr(run_mod, "_callbacks", lambda cfg, paths: [*orig(cfg, paths), killer])
        with pytest.raises(SystemExit) as exc:
            run_mod.run(cfg_for(tmp, *extra))
    # Lightning's SIGTERMException (a SystemExit with status 0) becomes exit status 143 = 128 + SIGTERM
    assert exc.value.code == 143 and type(exc.value.__cause__).__name__ == "SIGTERMException"
    _, stopped = record(tmp)
    # stopped by a signal, not failed: the next launch resumes it (bioreg.launch.stints)
    assert stopped["status"] == "interrupted" and "SIGTERM" in stopped["error"]
    assert [st["end"] for st in stopped["stints"]] == ["interrupted"]
    (last,) = list((tmp / "ckpt").rglob("last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == ckpt_epoch
    return stopped


def kill_and_resume(tmp: Path, monkeypatch, killer: L.Callback | None = None,
                    ckpt_epoch: int = KILL_AFTER_EPOCH,
                    extra: Sequence[str] = ()) -> dict:
    """:func:`kill`, then relaunch the same config: the interrupted record does not count, ``last.ckpt``
    is resumed. Returns the interrupted record."""
    stopped = kill(tmp, monkeypatch, killer, ckpt_epoch, extra)
    run_mod.run(cfg_for(tmp, *extra))
    return stopped

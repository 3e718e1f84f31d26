"""End to end with the device-resident data path forced on the CPU device (``data.device_resident=true``):
the digits demo still learns, and kill-and-resume still ends bit-identical (the data order comes
from ``(data_seed, epoch)`` and ``data_seed`` travels in the checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bioreg.app.run as run_mod
from helpers.configs import compose
from helpers.runs import cfg_for, kill_and_resume, record, weights

DEVICE = ["data.device_resident=true", "data.augment=true"]


@pytest.mark.slow
def test_digits_demo_learns_with_the_device_resident_path(tmp_path):
    """The demo's model (reg=none, as tests/test_train_e2e.py's learning check) with batches drawn
    and augmented by the device-resident loader: >= 90 % test accuracy, as the per-image path."""
    torch.manual_seed(0)
    cfg = compose(
        ["+experiment=demo", "reg=none", *DEVICE, f"results_dir={tmp_path}/r", f"ckpt_dir={tmp_path}/c",
                   "trainer.enable_progress_bar=false", "eval.progress=false", "eval.suites=[clean]",
                   "logger=none"])
    run_mod.run(cfg)
    (path,) = sorted((tmp_path / "r").rglob("seed*.json"))
    rec = json.loads(path.read_text())
    assert rec["config"]["data"]["device_resident"] is True
    assert rec["summary"]["test_acc"] >= 90.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_device_resident_run_resumes_to_the_same_result(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_mod.run(cfg_for(a, *DEVICE))
    kill_and_resume(b, monkeypatch, extra=DEVICE)
    (_, ra), (_, rb) = record(a), record(b)
    assert ra["status"] == rb["status"] == "completed"
    for k in ("best_epoch", "best_val_acc", "train", "metrics", "summary"):
        assert ra[k] == rb[k], k
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ckpt = torch.load(next((b / "ckpt").rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["DigitsDataModule"] == {"data_seed": 0}  # the run seed, saved by the data module

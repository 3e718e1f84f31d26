"""Training loop seams on the real digits data: the best-validation checkpoint is the one evaluated,
and the training epoch reaches the regularizers (TrainingState, DropBlock's schedule)."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from torch.utils.data import DataLoader

from bioreg.app.run import build, run
from bioreg.layers.dropout import DropBlock
from bioreg.lit.module import Classifier
from helpers.configs import compose
from helpers.lit_probes import StateProbe

TINY = ["data=digits", "model=allconvnet_small", "optim=adam", "optim.optimizer.lr=0.003",
        "trainer.enable_progress_bar=false",
        "eval.progress=false", "eval.suites=[clean]", "logger=none"]


@torch.no_grad()
def accuracy_of_checkpoint(cfg, path, loader) -> float:
    """Accuracy (%) of a checkpoint's network, loaded into a freshly built model (strictly), on ``loader``."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    dm_mean, dm_std = state["model.mean"].flatten().tolist(), state["model.std"].flatten().tolist()
    model = Classifier(instantiate(cfg.model, _convert_="all"), dm_mean, dm_std)
    model.load_state_dict({k[len("model."):]: v for k, v in state.items()}, strict=True)
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / total


@pytest.mark.slow
def test_the_best_validation_checkpoint_is_evaluated(tmp_path):
    """Val accuracy peaks at epoch 1 of 3 (the callback zeroes the last layer while validating epoch 0,
    and for good before validating epoch 2): the record names epoch 1 and its test accuracy is that of
    best.ckpt, not of the final (corrupted) weights."""
    cfg = compose([*TINY, "trainer.max_epochs=3", "trainer.limit_train_batches=10",
                   f"results_dir={tmp_path}/r", f"ckpt_dir={tmp_path}/c"])
    with open_dict(cfg):
        cfg.callbacks = OmegaConf.create(
            {"peak": {"_target_": "helpers.lit_probes.PeakThenCorrupt", "peak_epoch": 1}})
    returned = run(cfg)
    (path,) = sorted((tmp_path / "r").rglob("seed*.json"))
    rec = json.loads(path.read_text())
    history = rec["extra"]["peak_probe"]["val_acc"]
    assert len(history) == 3 and history[1] > max(history[0], history[2]) + 0.05, history
    assert rec["best_epoch"] == 1
    assert rec["best_val_acc"] == pytest.approx(100.0 * history[1],
                                                abs=1e-4) and returned == rec["best_val_acc"]

    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    test = DataLoader(dm.test_set(), batch_size=256, shuffle=False)
    ckpt = tmp_path / "c" / "default" / rec["config_key"] / "seed0"
    best = accuracy_of_checkpoint(cfg, ckpt / "best.ckpt", test)
    final = accuracy_of_checkpoint(cfg, ckpt / "last.ckpt", test)
    print(f"val acc by epoch {history}; test acc of best.ckpt {best:.2f} %, of last.ckpt {final:.2f} %")
    assert best > final + 10.0, (best, final)  # the final weights are measurably different
    assert rec["summary"]["test_acc"] == pytest.approx(best, abs=1e-9)
    assert rec["metrics"]["test"]["acc"] == pytest.approx(best, abs=1e-9)
    # and best.ckpt is the epoch-1 model: its validation accuracy is the recorded best
    val = accuracy_of_checkpoint(cfg, ckpt / "best.ckpt", dm.val_dataloader())
    assert val == pytest.approx(rec["best_val_acc"], abs=1e-3)


class EpochCheck(L.Callback):
    """After each training batch: (trainer epoch, trainer step before the batch, what the modules saw)."""

    def __init__(self, probe: StateProbe, dropblock: DropBlock):
        self.probe, self.dropblock = probe, dropblock
        self.rows: list[tuple] = []
        self._step = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rows.append((trainer.current_epoch, self._step, self.probe.seen[-1], self.dropblock.state.epoch))


@pytest.mark.slow
def test_training_epoch_reaches_the_regularizers(tmp_path):
    """A 3-epoch fit: every inserted module sees the Trainer's epoch at every step, and a DropBlock
    (linear schedule, off in epoch 0) drops a positive fraction of activations from epoch 1 on."""
    epochs, batches = 3, 3
    cfg = compose([*TINY, f"trainer.max_epochs={epochs}", f"trainer.limit_train_batches={batches}"])
    with open_dict(cfg):
        cfg.reg = OmegaConf.create({
            "probe": {"at": "layer1", "_target_": "helpers.lit_probes.StateProbe"},
            "db": {"at": "layer2", "_target_": "bioreg.layers.dropout.DropBlock", "drop_prob": 0.5,
                   "block_size": 3, "schedule": "linear"},
        })
    torch.manual_seed(0)
    dm, lit = build(cfg)
    regs = dict(lit.model.net.regularizers)
    (probe,) = [m for m in regs.values() if isinstance(m, StateProbe)]
    (db,) = [m for m in regs.values() if isinstance(m, DropBlock)]
    assert probe.ctx.state is db.state is lit.state  # one TrainingState shared by every module

    dropped: list[tuple[int, float]] = []  # (epoch the DropBlock sees, fraction of non-zero inputs zeroed)

    def hook(mod, inp, out):
        if mod.training:
            nz = inp[0] != 0
            dropped.append((mod.state.epoch, float((nz & (out == 0)).sum() / nz.sum().clamp_min(1))))

    db.register_forward_hook(hook)
    check = EpochCheck(probe, db)
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, accelerator="cpu", devices=1, default_root_dir=str(tmp_path),
                        callbacks=[check])
    trainer.fit(lit, datamodule=dm)

    assert [r[0] for r in check.rows] == [e for e in range(epochs) for _ in range(batches)]
    for trainer_epoch, step, seen, db_epoch in check.rows:
        assert seen["epoch"] == trainer_epoch == db_epoch
        assert seen["max_epochs"] == epochs and seen["global_step"] == step
        assert 0.0 <= seen["progress"] <= 1.0
    assert [s["global_step"] for s in probe.seen] == list(range(epochs * batches))
    progress = [s["progress"] for s in probe.seen]
    assert progress == sorted(progress) and progress[0] < progress[-1]  # the schedule advances

    assert len(dropped) == epochs * batches
    assert [e for e, _ in dropped] == [r[0] for r in check.rows]
    later = [f for e, f in dropped if e >= 1]
    assert later and all(f > 0.0 for f in later), dropped

"""bioreg's Lightning callbacks (bioreg.lit.callbacks) and their state in checkpoints.

Lightning stores a callback's state under its ``state_key`` (by default the class's ``__qualname__``,
not its module): the callbacks moved to ``bioreg.lit.callbacks`` and the ModelCheckpoint subclass keep
the keys bioreg 0.1 wrote, so a checkpoint written before loads its callback state into them.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.call import _call_callbacks_load_state_dict

from bioreg.lit.callbacks.activation_stats import ActivationStats
from bioreg.lit.callbacks.checkpoint import RelocatableModelCheckpoint
from bioreg.lit.callbacks.resume import RNGStateCheckpoint, capture_rng_state
from bioreg.lit.callbacks.stopping import StopAtAccuracy

#: the checkpoint state keys of bioreg 0.1's callbacks (the two ModelCheckpoints of bioreg.app.run)
KEYS_0_1 = {
    "best": "ModelCheckpoint{'monitor': 'val/acc', 'mode': 'max', 'every_n_train_steps': 0, "
            "'every_n_epochs': 1, 'train_time_interval': None}",
    "last": "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None}",
    "rng": "RNGStateCheckpoint",
    "stop": "StopAtAccuracy[monitor=val/acc]",
    "stats": "ActivationStats",
}


def _best(dirpath: Path, cls=RelocatableModelCheckpoint):
    return cls(dirpath=dirpath, filename="best", monitor="val/acc", mode="max", save_top_k=1,
               auto_insert_metric_name=False)


def _last(dirpath: Path, cls=RelocatableModelCheckpoint):
    return cls(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, every_n_epochs=1,
               enable_version_counter=False, auto_insert_metric_name=False)


def test_state_keys_are_those_bioreg_0_1_wrote(tmp_path):
    cbs = {"best": _best(tmp_path), "last": _last(tmp_path), "rng": RNGStateCheckpoint(),
           "stop": StopAtAccuracy(), "stats": ActivationStats(points=["48"])}
    assert {k: cb.state_key for k, cb in cbs.items()} == KEYS_0_1
    assert _best(tmp_path).state_key == _best(tmp_path, ModelCheckpoint).state_key


def _saved_state(old: Path) -> dict:
    """What Lightning's own ModelCheckpoint of a run in ``old`` saved after 3 epochs (best: epoch 1)."""
    cb = _best(old, ModelCheckpoint)
    cb.best_k_models = {str(old / "best.ckpt"): torch.tensor(0.75)}
    cb.best_model_path = cb.kth_best_model_path = str(old / "best.ckpt")
    cb.best_model_score = cb.kth_value = torch.tensor(0.75)
    cb.last_model_path = str(old / "last.ckpt")
    cb.current_score = torch.tensor(0.5)
    return cb.state_dict()


def test_moved_folder_keeps_the_best_score_and_the_paths_move_along(tmp_path):
    old, new = tmp_path / "old" / "seed0", tmp_path / "new" / "seed0"
    state = _saved_state(old)
    stock = _best(new, ModelCheckpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stock.load_state_dict(state)
    assert stock.best_model_score is None and "dirpath has changed" in str(caught[0].message)  # the bug
    cb = _best(new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "dirpath has changed" warning
        cb.load_state_dict(state)
    assert float(cb.best_model_score) == 0.75 and float(cb.kth_value) == 0.75
    assert cb.best_model_path == cb.kth_best_model_path == os.path.join(str(new), "best.ckpt")
    assert cb.last_model_path == os.path.join(str(new), "last.ckpt")
    assert {k: float(v) for k, v in cb.best_k_models.items()} == {os.path.join(str(new), "best.ckpt"): 0.75}
    # a tie with the restored best (as a resumed epoch scoring 0.75 again) does not replace it
    one_process = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda d, all=True: d))
    assert not cb.check_monitor_top_k(one_process, torch.tensor(0.75))
    assert cb.check_monitor_top_k(one_process, torch.tensor(0.8))


def test_same_folder_loads_as_lightning_does(tmp_path):
    state = _saved_state(tmp_path)
    a, b = _best(tmp_path), _best(tmp_path, ModelCheckpoint)
    a.load_state_dict(state)
    b.load_state_dict(state)
    assert a.state_dict().keys() == b.state_dict().keys()
    for k, v in b.state_dict().items():
        assert (v == a.state_dict()[k]) if not isinstance(v,
                                                          dict) else v.keys() == a.state_dict()[k].keys(), k


def test_a_0_1_checkpoints_callback_states_load_into_the_moved_callbacks(tmp_path):
    """Lightning's own restore (``_call_callbacks_load_state_dict``) of a checkpoint dict keyed as 0.1 keyed
    it: every callback gets its state."""
    torch.manual_seed(123)
    rng = capture_rng_state()
    stop_state = {"stopped_epoch": 4, "stopped_value": 81.5, "epochs_trained": 5}
    ckpt = {"callbacks": {KEYS_0_1["best"]: _saved_state(tmp_path / "old"), KEYS_0_1["rng"]: rng,
                          KEYS_0_1["stop"]: stop_state}}
    best, stop = _best(tmp_path / "new"), StopAtAccuracy()
    trainer = L.Trainer(callbacks=[best, RNGStateCheckpoint(), stop], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    torch.manual_seed(0)
    _call_callbacks_load_state_dict(trainer, ckpt)
    assert (stop.stopped_epoch, stop.stopped_value, stop.epochs_trained) == (4, 81.5, 5)
    assert math.isclose(float(best.best_model_score), 0.75)
    assert torch.equal(torch.get_rng_state(), rng["torch"])  # the RNG streams continue where they were

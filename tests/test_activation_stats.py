"""ActivationStats callback (Singh 2023 §2.3.1, Tables 3.2-3.3) and the figure script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bioreg.lit.callbacks.activation_stats import STATS, ActivationStats, batch_stats
from bioreg.models.points import InsertionError, Point, insert

ROOT = Path(__file__).resolve().parents[1]


class Toy(nn.Module):
    """A tiny classifier with two insertion points ("input" and "fc", after the ReLU)."""

    def __init__(self):
        super().__init__()
        self.input = nn.Identity()
        self.fc = nn.Linear(4, 6)
        self.relu = nn.ReLU()
        self.head = nn.Linear(6, 3)

    @staticmethod
    def points():
        return {"input": Point(tap="input"), "fc": Point(tap="relu", producer="fc", block="fc")}

    def forward(self, x):
        return self.head(self.relu(self.fc(self.input(x))))


class HalfMask(nn.Module):
    """Deterministic stand-in for a dropout layer: zeroes the first half of the features in training."""

    def forward(self, a):
        if not self.training:
            return a
        m = torch.ones_like(a)
        m[:, : a.shape[1] // 2] = 0
        return a * m


def _np_stats(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.array([x.mean(), x.max(), x.std(), x.var(), 100.0 * np.mean(x == 0)])


def test_batch_stats_against_numpy():
    x = torch.tensor([[0.0, 1.5, -2.0, 0.0], [3.0, 0.0, 0.25, 4.0]])
    np.testing.assert_allclose(batch_stats(x).numpy(), _np_stats(x.numpy()), rtol=1e-6)
    assert batch_stats(x)[4].item() == pytest.approx(37.5)  # 3 of 8 exact zeros


def test_ewma_by_hand_and_output_after_regularizer():
    torch.manual_seed(0)
    net = Toy().train()
    insert(net, "fc", HalfMask())
    cb = ActivationStats(points=None, momentum=0.5)  # default: the points with a regularizer
    assert cb.attach(net) == ["fc"]
    seen, steps = [], []
    grab = net.relu.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))  # tap output
    for k in range(3):
        x = torch.randn(5, 4) * (k + 1)
        cb.begin_step()
        net(x)
        cb.end_step()
        out = seen[-1] * 1.0
        out[:, :3] = 0  # what the point outputs after HalfMask
        steps.append(_np_stats(out.numpy()))
    grab.remove()
    e1 = steps[0]
    e2 = 0.5 * e1 + 0.5 * steps[1]
    e3 = 0.5 * e2 + 0.5 * steps[2]
    e3[3] = e3[2] ** 2  # var is reported as the square of the reported std (Singh 2023, Tables 3.2-3.3)
    got = np.array([cb.summary()["fc"][s] for s in STATS])
    np.testing.assert_allclose(got, e3, rtol=1e-5, atol=1e-6)
    assert got[4] >= 50.0  # the masked half is counted as zeros: the regularizer's output is measured
    cb.end_epoch(epoch=0, step=3)
    h = cb.history["fc"]
    assert h["epoch"] == [0] and h["step"] == [3]
    epoch_mean = np.mean(steps, axis=0)
    epoch_mean[3] = epoch_mean[2] ** 2
    np.testing.assert_allclose([h["epoch_mean"][s][0] for s in STATS], epoch_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([h["ewma"][s][0] for s in STATS], e3, rtol=1e-5, atol=1e-6)
    # eval-mode forwards and forwards outside a training step are not counted
    net.eval()
    cb.begin_step()
    net(torch.randn(5, 4))
    cb.end_step()
    net.train()
    net(torch.randn(5, 4))
    np.testing.assert_allclose([cb.summary()["fc"][s] for s in STATS], e3, rtol=1e-5, atol=1e-6)
    n_hooks = len(net.relu._forward_hooks)
    cb.detach()
    assert len(net.relu._forward_hooks) == n_hooks - 1  # only the insertion hook is left


def test_variance_is_the_square_of_the_reported_std_as_in_singh_tables_3_2_3_3():
    """Singh (2023), Tables 3.2-3.3: var = std² in every row. Batches of very different spread make the
    average of per-batch variances differ from the square of the averaged std; the callback reports the
    latter."""
    net = Toy().train()
    cb = ActivationStats(points=["input"], momentum=0.5)
    cb.attach(net)
    per_batch = []
    for scale in (0.1, 10.0, 1.0):
        x = torch.randn(64, 4, generator=torch.Generator().manual_seed(int(scale * 10))) * scale
        per_batch.append(_np_stats(x.numpy()))
        cb.begin_step()
        net(x)
        cb.end_step()
        s = cb.summary()["input"]
        assert s["var"] == pytest.approx(s["std"] ** 2, rel=1e-6)
    std_ewma = 0.25 * per_batch[0][2] + 0.25 * per_batch[1][2] + 0.5 * per_batch[2][2]
    var_ewma_separately = 0.25 * per_batch[0][3] + 0.25 * per_batch[1][3] + 0.5 * per_batch[2][3]
    assert cb.summary()["input"]["std"] == pytest.approx(std_ewma, rel=1e-5)
    assert var_ewma_separately > 2 * std_ewma ** 2  # what averaging var separately would have reported
    cb.end_epoch(epoch=0, step=3)
    h = cb.history["input"]
    for kind in ("ewma", "epoch_mean"):
        assert h[kind]["var"][0] == pytest.approx(h[kind]["std"][0] ** 2, rel=1e-6), kind
    assert h["epoch_mean"]["std"][0] == pytest.approx(np.mean([b[2] for b in per_batch]), rel=1e-5)
    cb.detach()


def test_explicit_points_without_regularizer_and_dedup():
    net = Toy().train()
    assert list(ActivationStats(points=["fc", "fc"]).resolve(net)) == ["fc"]
    cb = ActivationStats(points=["fc", "input"], momentum=0.9)
    assert cb.attach(net) == ["fc", "input"]
    cb.begin_step()
    x = torch.randn(7, 4)
    net(x)
    cb.end_step()
    np.testing.assert_allclose([cb.summary()["input"][s] for s in STATS], _np_stats(x.numpy()), rtol=1e-5)
    cb.detach()


def test_unknown_point_and_bad_momentum():
    with pytest.raises(InsertionError, match="valid points: input, fc"):
        ActivationStats(points=["48"]).attach(Toy())
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ActivationStats(momentum=1.0)


SGD_01 = {"optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}}

def test_lightning_fit_logs_records_and_removes_hooks(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from bioreg.lit.module import LitClassifier

    torch.manual_seed(0)
    reg = {"n": {"at": "fc", "_target_": "bioreg.layers.normout.NormOut", "method": "max", "pool": "spatial"}}
    lit = LitClassifier(Toy(), mean=[0.0], std=[1.0], optim=SGD_01, reg=reg, input_shape=(4,))
    lit.model.mean = torch.zeros(1, 1)  # the toy's inputs are (N, 4), not images
    lit.model.std = torch.ones(1, 1)
    ds = TensorDataset(torch.randn(24, 4), torch.randint(0, 3, (24,)))
    cb = ActivationStats(points=["input"], momentum=0.9)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=CSVLogger(tmp_path, name="csv", version=""),
                        callbacks=[cb], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, log_every_n_steps=1, num_sanity_val_steps=0)
    trainer.fit(lit, DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=8))
    rec = cb.to_record()
    assert set(rec["activation_stats"]) == {"input", "fc"}
    assert set(rec["activation_stats"]["fc"]) == set(STATS)
    assert rec["activation_stats_history"]["fc"]["epoch"] == [0, 1]
    assert 0.0 < rec["activation_stats"]["fc"]["sparsity"] < 100.0
    json.dumps(rec)  # record-ready
    assert len(lit.model.net.relu._forward_hooks) == 1  # the callback's hook is gone, NormOut's stays
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "act/fc/sparsity" in header and "act/input/mean" in header
    state = cb.state_dict()
    cb2 = ActivationStats()
    cb2.load_state_dict(state)
    for point, stats in cb.summary().items():
        assert cb2.summary()[point] == pytest.approx(stats)
    assert cb2.history == cb.history


def test_figure_script_writes_png_and_pdf(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import fig_activation_stats as fig

    assert fig.thesis_label("vgg16_temporal_softmax_48_51_t100") == "Temporal Softmax 48 51 (T=100)"
    assert fig.thesis_label("vgg16_dropout_48_51") == "Dropout 48 51"
    assert fig.thesis_label("vgg16_baseline_noaug") == "Baseline-no-data-aug"
    for name, scale in (("vgg16_baseline", 1.0), ("vgg16_dropout_48_51", 0.5)):
        hist = {"epoch": [0, 1, 2], "step": [3, 6, 9],
                "ewma": {s: [scale, scale * 2, scale * 3] for s in STATS},
                "epoch_mean": {s: [scale] * 3 for s in STATS}}
        rec = {"name": name, "seed": 0, "config_key": "k", "status": "completed",
               "extra": {"activation_stats": {"48": {s: scale for s in STATS}},
                         "activation_stats_history": {"48": hist}}}
        p = tmp_path / "runs" / name / "k" / "seed0.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(rec))
    data = fig.load_histories(tmp_path / "runs", ["vgg16_baseline", "vgg16_dropout_48_51"], "48")
    np.testing.assert_allclose(data["vgg16_dropout_48_51"]["mean"], [0.5, 1.0, 1.5])
    assert fig.main(
        ["--results-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "fig"), "--points", "48",
                     "--names", "vgg16_baseline", "vgg16_dropout_48_51"]) == 0
    for stem in ("activation_stats_48", "activation_mean_std_48"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "fig" / f"{stem}.{ext}").stat().st_size > 1000

"""bioreg.evaluate.core: the summary of a run's metrics and the accuracy/loss of one loader.

Values are checked against hand-written numbers (docs/interfaces.md, "Run records": ``summary`` holds
``test_acc``, ``occlusion_acc{kind}``, ``corruption_acc{name}`` = mean over severities and
``corruption_mean_acc`` = mean of those per-corruption means).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bioreg.evaluate.core import evaluate_loader, evaluate_sets, summarize


def m(acc: float, loss: float = 1.0, n: int = 100) -> dict[str, float]:
    return {"acc": acc, "loss": loss, "n": n}


METRICS = {
    "test": m(91.5, loss=0.3),
    "occlusion/central": m(40.0),
    "occlusion/checkerboard": m(55.25),
    "corruption/gaussian_noise/1": m(80.0),
    "corruption/gaussian_noise/2": m(70.0),
    "corruption/gaussian_noise/3": m(60.0),
    "corruption/gaussian_noise/4": m(50.0),
    "corruption/gaussian_noise/5": m(40.0),
    # only two severities: the mean over corruptions then differs from the mean over all sets
    "corruption/contrast/1": m(90.0),
    "corruption/contrast/5": m(20.0),
    "corruption/brightness/3": m(88.0),
}


def test_summary_values():
    s = summarize(METRICS)
    assert s["test_acc"] == 91.5
    assert s["occlusion_acc"] == {"central": 40.0, "checkerboard": 55.25}
    assert s["corruption_acc"] == pytest.approx(
        {"gaussian_noise": 60.0, "contrast": 55.0, "brightness": 88.0},
        abs=1e-12)
    # mean of the per-corruption means, (60 + 55 + 88) / 3, not the mean of all 8 sets (63.5)
    assert s["corruption_mean_acc"] == pytest.approx(203.0 / 3, abs=1e-12)
    assert set(s) == {"test_acc", "occlusion_acc", "corruption_acc", "corruption_mean_acc"}


def test_summary_of_partial_metrics():
    assert summarize({"test": m(12.5)}) == {"test_acc": 12.5}
    assert summarize({}) == {}
    s = summarize({"corruption/fog/2": m(30.0), "corruption/fog/4": m(10.0)})
    assert s == {"corruption_acc": {"fog": 20.0}, "corruption_mean_acc": 20.0}
    assert summarize({"occlusion/vertical_half": m(7.0)}) == {"occlusion_acc": {"vertical_half": 7.0}}


class FixedLogits(nn.Module):
    """Ignores its input's values: returns row ``i`` of ``logits`` for the i-th example of the batch."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, x):
        return self.logits[x.flatten(1)[:, 0].long()]


def test_evaluate_loader_accuracy_and_mean_loss():
    logits = torch.tensor(
        [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.5], [0.0, 4.0, 0.0]])
    y = torch.tensor([0, 1, 0, 2, 1])  # rows 0, 1, 4 right; 2, 3 wrong -> 60 %
    idx = torch.arange(5, dtype=torch.float32)[:, None]
    loader = [(idx[:3], y[:3]), (idx[3:], y[3:])]  # batches of different size: the mean is per example
    out = evaluate_loader(FixedLogits(logits), loader, torch.device("cpu"))
    assert out["n"] == 5
    assert out["acc"] == pytest.approx(60.0, abs=1e-12)
    # closed form of the mean cross-entropy: mean_i(logsumexp(z_i) - z_i[y_i])
    ce = sum(math.log(sum(math.exp(v) for v in row)) - row[t] for row, t in zip(logits.tolist(), y.tolist(),
                                                                                strict=True)) / 5
    assert out["loss"] == pytest.approx(ce, rel=1e-6)
    assert out["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)


def test_evaluate_loader_empty_and_eval_mode():
    net = nn.Sequential(nn.Dropout(0.5), FixedLogits(torch.eye(2)))
    net.train()
    out = evaluate_loader(net, [], torch.device("cpu"))
    assert out["n"] == 0 and math.isnan(out["acc"]) and math.isnan(out["loss"])
    assert not net.training  # evaluation switches the model to eval mode


class FakeDM:
    def __init__(self, sets):
        self.sets = sets
        self.asked = None

    def eval_sets(self, suites):
        self.asked = suites
        return self.sets

    def eval_dataloader(self, ds):
        return [ds]


def test_evaluate_sets_per_set_metrics_then_summary():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[0.0], [1.0], [1.0], [0.0]])[:, :, None, None]  # predictions 0, 1, 1, 0
    sets = {"test": (x, torch.tensor([0, 1, 1, 0])), "occlusion/central": (x, torch.tensor([0, 0, 0, 0])),
            "corruption/contrast/1": (x, torch.tensor([1, 1, 1, 1])),
            "corruption/contrast/2": (x, torch.tensor([0, 1, 0, 0]))}
    dm = FakeDM(sets)
    out = evaluate_sets(FixedLogits(logits), dm, ("clean", "occlusion", "corruption"), torch.device("cpu"),
                        progress=False)
    assert dm.asked == ["clean", "occlusion", "corruption"]
    assert {k: v["acc"] for k, v in out.items()} == {"test": 100.0, "occlusion/central": 50.0,
                                                     "corruption/contrast/1": 50.0,
                                                     "corruption/contrast/2": 75.0}
    assert all(v["n"] == 4 for v in out.values())
    s = summarize(out)
    assert s["corruption_acc"] == {"contrast": 62.5} and s["corruption_mean_acc"] == 62.5

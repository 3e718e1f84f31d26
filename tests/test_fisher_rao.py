"""Fisher-Rao norm (Singh 2023 §1.4.1): forward-mode value vs. brute-force per-example gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bioreg.evaluate.core import EvalContext
from bioreg.evaluate.errors import EvaluatorConfigError
from bioreg.evaluate.fisher_rao import FisherRaoEvaluator, fisher_rao_terms, select_params


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    ).double()
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


def _brute(model: nn.Module, x, y, names, labels: str) -> torch.Tensor:
    """mean_i (θ·∇θ ℓ_i)², one autograd call per example (and per class for labels='model')."""
    ps = dict(model.named_parameters())
    sel = [ps[n] for n in names]
    vals = []
    for i in range(x.shape[0]):
        z = model(x[i:i + 1])
        classes = [int(y[i])] if labels == "data" else range(z.shape[1])
        weights = [1.0] if labels == "data" else F.softmax(z, 1)[0].detach().tolist()
        v = 0.0
        for c, w in zip(classes, weights, strict=True):
            loss = F.cross_entropy(model(x[i:i + 1]), torch.tensor([c]))
            gs = torch.autograd.grad(loss, sel)
            d = sum((g * p).sum() for g, p in zip(gs, sel, strict=True))
            v += w * float(d.detach()) ** 2
        vals.append(v)
    return torch.tensor(vals, dtype=torch.float64)


@pytest.mark.parametrize("labels", ["data", "model"])
@pytest.mark.parametrize("params", ["all", "weights"])
@pytest.mark.parametrize("method", ["jvp", "double_backward"])
def test_matches_brute_force(labels, params, method):
    model = _cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=g)
    names = select_params(model, params)
    fast = fisher_rao_terms(model, x, y, labels=labels, params=params, method=method)
    slow = _brute(model, x, y, names, labels)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-10)
    assert float(fast.mean()) > 0


def test_param_selection():
    model = _cnn()
    w = select_params(model, "weights")
    assert w == ["0.weight", "4.weight", "9.weight"]  # conv, conv, linear; no bias, no BatchNorm
    assert set(select_params(model, "all")) == {n for n, _ in model.named_parameters()}


def test_bias_free_relu_net_closed_form_and_rescaling_invariance():
    """Liang et al. (2019): for a bias-free ReLU net with L weight layers θ·∇θ z = L·z, so
    (θ·∇θ ℓ)² = L²((p − e_y)·z)², a function of the outputs only: invariant under the rescaling
    W1 → αW1, W2 → W2/α that leaves f unchanged."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(7, 9, bias=False), nn.ReLU(), nn.Linear(9, 8, bias=False), nn.ReLU(),
                        nn.Linear(8, 4, bias=False)).double()
    x = torch.randn(10, 7, dtype=torch.float64)
    y = torch.randint(0, 4, (10,))
    z = net(x).detach()
    expect = (3.0 * ((F.softmax(z, 1) - F.one_hot(y, 4).double()) * z).sum(1)) ** 2
    got = fisher_rao_terms(net, x, y)
    torch.testing.assert_close(got, expect, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.div_(3.0)
    torch.testing.assert_close(fisher_rao_terms(net, x, y), expect, rtol=1e-9, atol=1e-12)


def _share(model: nn.Module, name: str, x, y) -> torch.Tensor:
    """Per-example W·∇W ℓ of one parameter W (its share of θ·∇θ ℓ)."""
    w = dict(model.named_parameters())[name]
    out = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x) if model.training else model(x[i:i + 1]), y if model.training
                               else y[i:i + 1],
                               reduction="none")
        loss = loss[i] if model.training else loss[0]
        (g,) = torch.autograd.grad(loss, [w])
        out.append((g * w).sum().detach())
    return torch.stack(out)


def test_weight_followed_by_batchnorm_contributes_in_eval_mode():
    """In eval mode BatchNorm uses running statistics, so a conv weight before it is not scale-invariant:
    its share of θ·∇θ ℓ is non-zero and the norm changes when that weight alone is rescaled. With batch
    statistics (training mode) the share vanishes (BN(αWx) = BN(Wx))."""
    model = _cnn()  # conv "0" -> BatchNorm "1"
    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (6,), generator=g)
    share_eval = _share(model, "0.weight", x, y)
    assert share_eval.abs().max() > 1e-3
    # θ·∇θ ℓ without the conv weight differs from the full one by exactly that share
    full = fisher_rao_terms(model, x, y, params="all")
    d_all = torch.stack([sum((gg * p).sum() for gg, p in zip(torch.autograd.grad(
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), list(model.parameters())), model.parameters(),
                                                             strict=True))
        for i in range(6)]).detach()
    torch.testing.assert_close(full, d_all ** 2, rtol=1e-6, atol=1e-12)
    assert not torch.allclose(full, (d_all - share_eval) ** 2, rtol=1e-3)
    # rescaling only that weight changes the network and the norm in eval mode ...
    scaled = _cnn()
    with torch.no_grad():
        scaled[0].weight.mul_(2.0)
    assert not torch.allclose(fisher_rao_terms(scaled, x, y), full, rtol=1e-3)
    # ... while with batch statistics its share vanishes (up to BatchNorm's eps): the scale-invariance that
    # does not apply in eval mode
    model.train()
    share_train = _share(model, "0.weight", x, y)
    assert share_train.abs().max() < 1e-2 * share_eval.abs().max()


class _DM:
    num_classes = 5

    def __init__(self, x, y):
        self.ds = torch.utils.data.TensorDataset(x, y)

    def test_set(self):
        return self.ds

    def train_eval_set(self):
        return self.ds


def test_evaluator_record_and_batching():
    model = _cnn().float()
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(10, 3, 8, 8, generator=g), torch.randint(0, 5, (10,), generator=g)
    ctx = EvalContext(model=model, datamodule=_DM(x, y), device=torch.device("cpu"), progress=False)
    a = FisherRaoEvaluator(n=7, batch_size=3)(ctx)
    b = FisherRaoEvaluator(n=7, batch_size=7, method="double_backward")(ctx)
    assert a["n"] == 7 and a["labels"] == "data" and a["params"] == "all" and a["split"] == "test"
    assert a["value"] == pytest.approx(b["value"], rel=1e-4)
    direct = float(fisher_rao_terms(model, x[:7], y[:7]).mean())
    assert a["value"] == pytest.approx(direct, rel=1e-5)


@pytest.mark.parametrize("kw, word", [({"labels": "true"}, "data, model"), ({"params": "bn"}, "all, weights"),
                                      ({"n": 0}, "n must be"), ({"split": "val"}, "test, train"),
                                      ({"batch_size": 0}, "batch_size")])
def test_bad_input(kw, word):
    with pytest.raises(EvaluatorConfigError, match=word):
        FisherRaoEvaluator(**kw)

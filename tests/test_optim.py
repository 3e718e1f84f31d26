"""Optimizers and schedules: weight decay only on weights, the thesis's schedules, bad names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bioreg.lit.optim import build_optimizer, build_scheduler, param_groups
from bioreg.models import resnet20


def test_weight_decay_only_on_weights():
    net = resnet20()
    groups = param_groups(net, 1e-4)
    decayed = {id(p) for p in groups[0]["params"]}
    for name, p in net.named_parameters():
        is_weight = p.ndim > 1  # conv / linear kernels
        assert (id(p) in decayed) == is_weight, name
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert len(decayed) + len(groups[1]["params"]) == len(list(net.parameters()))


def test_bias_is_not_decayed_in_an_actual_step():
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.fill_(1.0)
    opt = build_optimizer(lin, {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.5})
    opt.zero_grad()
    (lin.weight.sum() * 0 + lin.bias.sum() * 0).backward()  # zero loss gradient: only decay acts
    opt.step()
    assert torch.allclose(lin.weight, torch.full_like(lin.weight, 1 - 0.1 * 0.5))
    assert torch.equal(lin.bias, torch.ones_like(lin.bias))


def test_nesterov_and_adam():
    net = nn.Linear(3, 2)
    sgd = build_optimizer(net, {"name": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": True})
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer(net, {"name": "adam", "lr": 1e-3}), torch.optim.Adam)


def test_dutta_multistep_schedule():
    opt = build_optimizer(nn.Linear(2, 2), {"name": "sgd", "lr": 0.01, "momentum": 0.9})
    sched = build_scheduler(opt, {"name": "multistep", "milestones": [200, 250, 300], "gamma": 0.1}, 350)
    lrs = []
    for _ in range(350):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[199] == pytest.approx(0.01) and lrs[200] == pytest.approx(1e-3)
    assert lrs[250] == pytest.approx(1e-4) and lrs[349] == pytest.approx(1e-5)


def test_cosine_and_constant():
    opt = build_optimizer(nn.Linear(2, 2), {"name": "sgd", "lr": 0.1})
    assert build_scheduler(opt, {"name": "constant"}, 10) is None
    sched = build_scheduler(opt, {"name": "cosine"}, 10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "cfg,match",
    [
        ({"name": "rmsprop", "lr": 0.1}, "unknown optimizer 'rmsprop'; valid choices: sgd, adam"),
        ({"name": "sgd", "lr": -1.0}, "lr must be positive"),
        ({"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": True}, "nesterov=true needs optim.momentum > 0"),
    ],
)
def test_bad_optimizer_config(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(nn.Linear(2, 2), cfg)


def test_bad_scheduler_name():
    opt = build_optimizer(nn.Linear(2, 2), {"name": "sgd", "lr": 0.1})
    with pytest.raises(ValueError, match="valid choices: constant, multistep, cosine"):
        build_scheduler(opt, {"name": "step"}, 10)

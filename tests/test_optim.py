"""Optimizers and schedules: weight decay only on weights, the thesis's schedules, bad names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bioreg.config.validate import check_optim
from bioreg.errors import ConfigError
from bioreg.lit.optim import build_optimizer, build_scheduler, param_groups
from bioreg.models import VGG11, AllConvNet, resnet20

_OPTIMIZERS = {"sgd": "torch.optim.SGD", "adam": "torch.optim.Adam", "rmsprop": "torch.optim.RMSpropX"}
_SCHEDULERS = {"multistep": "MultiStepLR", "cosine": "CosineAnnealingLR", "step": "StepLRX"}


def optim(name: str, decay_bias_and_norm: bool | None = None, **kw) -> dict:
    """An ``optim`` node: ``optim("sgd", lr=0.1)`` = ``{optimizer: {_target_: torch.optim.SGD, _partial_:
    true, lr: 0.1}}``."""
    out: dict = {"optimizer": {"_target_": _OPTIMIZERS[name], "_partial_": True, **kw}}
    if decay_bias_and_norm is not None:
        out["decay_bias_and_norm"] = decay_bias_and_norm
    return out


def schedule(name: str, **kw) -> dict:
    return {} if name == "constant" else {"_target_": f"torch.optim.lr_scheduler.{_SCHEDULERS[name]}",
                                          "_partial_": True, **kw}

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def expected_decay(model: nn.Module) -> tuple[set[int], set[int]]:
    """(decayed, not decayed) parameter ids by module type and parameter name, not by shape:
    Conv*/Linear ``weight`` -> decay; every ``bias`` and the affine parameters of
    BatchNorm*/GroupNorm/LayerNorm -> no decay. Any other parameter fails the test (classify it here)."""
    decay, no_decay = set(), set()
    for mname, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            if isinstance(mod, _NORMS) or pname == "bias":
                no_decay.add(id(p))
            elif isinstance(mod, _WEIGHTED) and pname == "weight":
                decay.add(id(p))
            else:
                raise AssertionError(f"unclassified parameter {mname}.{pname} ({type(mod).__name__})")
    return decay, no_decay


class Mixed(nn.Module):
    """Every module kind the rule must handle, incl. 1-row weights and 1-D conv kernels."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 3, 3)
        self.c2 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm1d(3)
        self.bn2 = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm(5)
        self.head = nn.Linear(5, 1)  # weight (1, 5): still a weight
        self.tiny = nn.Linear(1, 1)  # weight (1, 1)


@pytest.mark.parametrize("make", [resnet20, VGG11, AllConvNet, Mixed])
def test_weight_decay_only_on_conv_and_linear_weights(make):
    net = make()
    want_decay, want_no = expected_decay(net)
    assert want_decay and want_no
    groups = param_groups(net, 1e-4)
    assert len(groups) == 2
    assert groups[0]["weight_decay"] == 1e-4 and groups[1]["weight_decay"] == 0.0
    assert {id(p) for p in groups[0]["params"]} == want_decay
    assert {id(p) for p in groups[1]["params"]} == want_no
    # the optimizer actually built from a config carries the same split
    opt = build_optimizer(net, optim("sgd", lr=0.1, momentum=0.9, weight_decay=5e-4))
    by_wd = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_wd == {5e-4: want_decay, 0.0: want_no}
    # decay_bias_and_norm puts everything in the decayed group
    opt = build_optimizer(net, optim("adam", lr=1e-3, weight_decay=1e-2, decay_bias_and_norm=True))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 1e-2 for p in g["params"]}
    assert decayed == want_decay | want_no


def test_shared_and_frozen_parameters():
    """A tied parameter is listed once; a frozen one not at all."""
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    net[1].weight = net[0].weight
    net[1].bias.requires_grad_(False)
    groups = param_groups(net, 0.1)
    assert [len(g["params"]) for g in groups] == [1, 1]
    assert groups[0]["params"][0] is net[0].weight and groups[1]["params"][0] is net[0].bias


def test_bias_is_not_decayed_in_an_actual_step():
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.fill_(1.0)
    opt = build_optimizer(lin, optim("sgd", lr=0.1, momentum=0.0, weight_decay=0.5))
    opt.zero_grad()
    (lin.weight.sum() * 0 + lin.bias.sum() * 0).backward()  # zero loss gradient: only decay acts
    opt.step()
    assert torch.allclose(lin.weight, torch.full_like(lin.weight, 1 - 0.1 * 0.5))
    assert torch.equal(lin.bias, torch.ones_like(lin.bias))


def test_nesterov_and_adam():
    net = nn.Linear(3, 2)
    sgd = build_optimizer(net, optim("sgd", lr=0.01, momentum=0.9, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer(net, optim("adam", lr=1e-3)), torch.optim.Adam)


def test_dutta_multistep_schedule():
    opt = build_optimizer(nn.Linear(2, 2), optim("sgd", lr=0.01, momentum=0.9))
    sched = build_scheduler(opt, schedule("multistep", milestones=[200, 250, 300], gamma=0.1), 350)
    lrs = []
    for _ in range(350):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[199] == pytest.approx(0.01) and lrs[200] == pytest.approx(1e-3)
    assert lrs[250] == pytest.approx(1e-4) and lrs[349] == pytest.approx(1e-5)


def test_cosine_and_constant():
    opt = build_optimizer(nn.Linear(2, 2), optim("sgd", lr=0.1))
    assert build_scheduler(opt, schedule("constant"), 10) is None
    sched = build_scheduler(opt, schedule("cosine"), 10)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "cfg,match",
    [
        (optim("rmsprop", lr=0.1),
         r"optim.optimizer._target_='torch.optim.RMSpropX' is not an optimizer; valid: "
                                   r"torch.optim.ASGD, .*torch.optim.Adam, .*torch.optim.SGD"),
        (optim("sgd", lr=-1.0), "optim.optimizer.lr must be a number > 0; got -1.0"),
        (optim("sgd", lr=0.1, momentum=0.0, nesterov=True), "Nesterov momentum requires a momentum"),
    ],
)
def test_bad_optimizer_config(cfg, match):
    """Refused at start-up by the config check (exit 2, one line), not inside ``fit``."""
    with pytest.raises(ConfigError, match=match):
        check_optim(cfg)


def test_bad_scheduler_name():
    with pytest.raises(ConfigError,
                       match=r"is not an LR scheduler; valid: .*CosineAnnealingLR, .*MultiStepLR"):
        check_optim({**optim("sgd", lr=0.1), "scheduler": schedule("step")}, 10)

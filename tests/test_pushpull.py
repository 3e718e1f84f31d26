"""Tests of the push-pull layer (Strisciuglio et al. 2020; bioreg.layers.pushpull) and the CIFAR AlexNet.

Tolerances: float32 convolutions of the same numbers in a different order agree to 1e-5
(absolute, activations of order 1); identical computations are compared exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from bioreg.app.run import load_net_weights
from bioreg.layers.base import RegularizerConfigError
from bioreg.layers.pushpull import PushPull2d, pull_kernel_size, to_push_pull
from bioreg.lit.module import place_regularizers
from bioreg.models.alexnet import AlexNetCifar
from bioreg.models.resnet import resnet20

CONF = Path(__file__).resolve().parents[1] / "conf"
ATOL = 1e-5


def _reg(option: str) -> dict:
    """A conf/reg option file as the plain dict LitClassifier receives (interpolations resolved)."""
    return OmegaConf.to_container(OmegaConf.create({"reg": OmegaConf.load(CONF / "reg" / f"{option}.yaml")}),
                                  resolve=True)["reg"]


# --------------------------------------------------------------------------- shapes and kernels
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("scale", [1, 2, 3])
def test_output_shape_equals_replaced_conv(stride, k, scale):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, k, stride=stride, padding=k // 2, bias=False)
    pp = PushPull2d.from_conv(conv, scale=scale)
    x = torch.randn(2, 3, 15, 16)
    y = pp(x)
    assert y.shape == conv(x).shape
    assert pp.pull_size == (pull_kernel_size(k, scale),) * 2
    assert pp.pull_response(x).shape == y.shape


@pytest.mark.parametrize("dilation,groups,padding", [(2, 1, 2), (1, 2, 0), (2, 2, "same")])
def test_output_shape_with_dilation_groups_and_string_padding(dilation, groups, padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=padding, dilation=dilation, groups=groups)
    pp = PushPull2d.from_conv(conv, scale=2)
    x = torch.randn(1, 4, 13, 12)
    assert pp(x).shape == conv(x).shape
    torch.testing.assert_close(pp.push_response(x), F.relu(conv(x)), atol=ATOL, rtol=0)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_keep_push_equal_to_conv(mode):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1, padding_mode=mode)
    pp = PushPull2d.from_conv(conv, scale=2)
    x = torch.randn(2, 3, 10, 10)
    torch.testing.assert_close(pp.push_response(x), F.relu(conv(x)), atol=ATOL, rtol=0)
    assert pp(x).shape == conv(x).shape


@pytest.mark.parametrize("k,scale,size",
                         [(3, 1, 3), (3, 1.5, 5), (3, 2, 7), (3, 3, 9), (5, 2, 11), (5, 1.5, 7)])
def test_pull_kernel_is_negated_bilinear_upsampling(k, scale, size):
    torch.manual_seed(1)
    pp = PushPull2d(2, 3, k, padding=k // 2, bias=False, scale=scale)
    assert pull_kernel_size(k, scale) == size
    expected = F.interpolate(pp.weight.detach(), size=(size, size), mode="bilinear", align_corners=True)
    torch.testing.assert_close(pp.pull_kernel.detach(), -expected, atol=1e-7, rtol=0)
    # corners aligned: the four corner taps of the pull kernel are the push kernel's corners, negated
    w = pp.weight.detach()
    pk = pp.pull_kernel.detach()
    for i, j in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        torch.testing.assert_close(pk[..., i, j], -w[..., i, j])
    # and the pull path convolves with it, centred, bias-free here
    x = torch.randn(1, 2, 12, 12)
    pad = (size - 1) // 2
    torch.testing.assert_close(pp.pull_response(x), F.relu(F.conv2d(x, -expected, padding=pad)), atol=ATOL,
                               rtol=0)


def test_bias_enters_the_pull_path_negated():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.5, -0.5, 1.0, -1.0]))
    pp = PushPull2d.from_conv(conv, scale=2)
    x = torch.randn(2, 3, 9, 9)
    up = F.interpolate(conv.weight.detach(), size=(7, 7), mode="bilinear", align_corners=True)
    manual = F.relu(F.conv2d(x, -up, -conv.bias.detach(), padding=3))
    torch.testing.assert_close(pp.pull_response(x), manual, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- the formula
def test_alpha_zero_is_relu_of_conv():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    pp = PushPull2d.from_conv(conv, scale=2, alpha=0)
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(pp(x), F.relu(conv(x)), atol=ATOL, rtol=0)


@pytest.mark.parametrize("c", [0.7, -0.7])
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_constant_image_follows_the_formula(c, alpha):
    """On a constant image c (away from the zero-padded border) the push response is ReLU(c·Σk + b),
    the pull response ReLU(−(c·Σk↑ + b)), and P = push − α·pull."""
    torch.manual_seed(4)
    pp = PushPull2d(2, 6, 3, padding=1, bias=True, scale=2, alpha=alpha)
    x = torch.full((1, 2, 20, 20), c)
    s_push = pp.weight.detach().sum(dim=(1, 2, 3))
    s_pull = -pp.pull_kernel.detach().sum(dim=(1, 2, 3))  # Σ k↑
    b = pp.bias.detach()
    push = F.relu(c * s_push + b)
    pull = F.relu(-(c * s_pull + b))
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))  # beyond the 7x7 pull kernel's reach
    y = pp(x)[inner]
    expect = (push - alpha * pull).view(1, -1, 1, 1).expand_as(y)
    torch.testing.assert_close(y, expect, atol=ATOL, rtol=0)
    # where the push kernel fires, an equally signed pull kernel is silent, and vice versa:
    # the two responses never overlap for kernels whose sums have the same sign
    same = torch.sign(s_push) == torch.sign(s_pull)
    both = (push > 0) & (pull > 0) & (b == 0)
    assert not (both & same).any()


def test_scale_one_alpha_one_is_linear():
    """h = 1, α = 1, no bias: ReLU(k*I) − ReLU(−k*I) = k*I (the pull kernel is −k)."""
    torch.manual_seed(5)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    pp = PushPull2d.from_conv(conv, scale=1, alpha=1)
    x = torch.randn(2, 3, 7, 7)
    torch.testing.assert_close(pp(x), conv(x), atol=ATOL, rtol=0)


# --------------------------------------------------------------------------- gradients and learned alpha
@pytest.mark.parametrize("train_alpha", [False, True])
def test_gradients_reach_push_kernel_and_alpha(train_alpha):
    torch.manual_seed(6)
    pp = PushPull2d(3, 4, 3, padding=1, bias=True, scale=2, alpha=1, train_alpha=train_alpha)
    x = torch.randn(2, 3, 8, 8)
    pp(x).square().sum().backward()
    assert pp.weight.grad is not None and pp.weight.grad.abs().sum() > 0
    assert pp.bias.grad is not None
    if train_alpha:
        assert pp.alpha_raw.grad is not None and pp.alpha_raw.grad.abs().sum() > 0
        assert pp.alpha_raw.shape == (4,)
    else:
        assert [n for n, _ in pp.named_parameters()] == ["weight", "bias"]


def test_pull_path_contributes_to_the_kernel_gradient():
    torch.manual_seed(7)
    pp = PushPull2d(3, 4, 3, padding=1, bias=False, scale=2, alpha=1)
    x = torch.randn(2, 3, 8, 8)
    pp.pull_response(x).sum().backward()
    assert pp.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("param", ["project", "softplus", "relu"])
def test_learned_alpha_stays_non_negative(param):
    torch.manual_seed(8)
    pp = PushPull2d(3, 4, 3, padding=1, bias=False, scale=2, alpha=0.3, train_alpha=True, alpha_param=param)
    torch.testing.assert_close(pp.alpha_value().detach(), torch.full((4,), 0.3))
    opt = torch.optim.SGD([pp.alpha_raw], lr=5.0)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(5):  # loss = −ΣP: dL/dα = Σ pull ≥ 0, so every step pushes α down
        opt.zero_grad()
        (-pp(x).sum()).backward()
        opt.step()
        a = pp.alpha_value().detach()
        assert (a >= 0).all()
    out = pp(x)
    a = pp.alpha_value().detach().view(1, -1, 1, 1)
    assert (a >= 0).all()
    torch.testing.assert_close(out, pp.push_response(x) - a * pp.pull_response(x), atol=ATOL, rtol=0)
    if param in ("project", "relu"):
        assert (a == 0).all()  # pushed to the boundary
    if param == "project":  # projected gradient descent: α can leave 0 again
        for _ in range(3):
            opt.zero_grad()
            pp(x).sum().backward()
            opt.step()
        assert (pp.alpha_value() > 0).all()


# --------------------------------------------------------------------------- placement in models
def test_checkpoint_conversion_keeps_push_equal_to_old_conv_relu(tmp_path):
    torch.manual_seed(9)
    trained = resnet20()
    with torch.no_grad():  # "trained": weights unlike the initialisation
        for p in trained.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"model.net.{k}": v for k, v in trained.state_dict().items()}, "epoch": 3},
               ckpt)

    net = resnet20()
    load_net_weights(net, str(ckpt))  # as run.build(): weights first, regularizers after
    place_regularizers(net, _reg("pushpull"), (3, 32, 32))
    assert isinstance(net.conv1, PushPull2d) and net.conv1.scale == 2 and net.conv1.alpha == 1
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(net.conv1.push_response(x), F.relu(trained.conv1(x)))
    assert torch.equal(net.conv1.weight, trained.conv1.weight)
    net.eval()
    assert net(x).shape == (3, 10)


def test_layer1_and_all_options_replace_the_right_convolutions():
    net = resnet20()
    place_regularizers(net, {**_reg("pushpull"), **_reg("pushpull_layer1")}, (3, 32, 32))
    pp = [n for n, m in net.named_modules() if isinstance(m, PushPull2d)]
    assert pp == ["conv1"] + [f"layer1.{b}.conv{i}" for b in range(3) for i in (1, 2)]

    net = resnet20()
    all_yaml = OmegaConf.load(CONF / "reg" / "pushpull_all.yaml")
    cfg = OmegaConf.to_container(OmegaConf.create({"reg": all_yaml}))
    cfg["reg"]["pushpull"]["scale"] = 1.5  # the stage entries follow reg.pushpull
    cfg = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)["reg"]
    place_regularizers(net, cfg, (3, 32, 32))
    mods = {n: m for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, PushPull2d))}
    plain = sorted(n for n, m in mods.items() if isinstance(m, nn.Conv2d))
    assert plain == ["layer2.0.shortcut.0", "layer3.0.shortcut.0"]  # 1x1 projections stay plain
    assert sum(isinstance(m, PushPull2d) for m in mods.values()) == 1 + 2 * 9
    assert all(m.scale == 1.5 for m in mods.values() if isinstance(m, PushPull2d))
    net.eval()
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_learned_alpha_entry_trains_alpha_in_a_resnet():
    net = resnet20()
    cfg = _reg("pushpull")
    cfg["pushpull"].update(train_alpha=True, alpha=0.5)
    place_regularizers(net, cfg, (3, 32, 32))
    assert "conv1.alpha_raw" in dict(net.named_parameters())


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("scale", [0, -1, float("nan"), "two"])
def test_bad_scale(scale):
    with pytest.raises(RegularizerConfigError, match=r"scale must be .*> 0"):
        PushPull2d(3, 4, 3, scale=scale)
    with pytest.raises(RegularizerConfigError, match="scale"):
        to_push_pull(nn.Conv2d(3, 4, 3), scale=scale)


@pytest.mark.parametrize("alpha", [-0.1, float("inf")])
def test_bad_alpha(alpha):
    with pytest.raises(RegularizerConfigError, match=r"alpha .*>= 0"):
        PushPull2d.from_conv(nn.Conv2d(3, 4, 3), alpha=alpha)


def test_bad_alpha_param_and_softplus_zero():
    with pytest.raises(RegularizerConfigError, match="project, softplus, relu"):
        PushPull2d(3, 4, 3, train_alpha=True, alpha_param="exp")
    with pytest.raises(RegularizerConfigError, match="softplus.*alpha > 0"):
        PushPull2d(3, 4, 3, alpha=0, train_alpha=True, alpha_param="softplus")


def test_replacing_a_point_that_is_not_a_convolution():
    net = AlexNetCifar()
    cfg = _reg("pushpull")
    cfg["pushpull"]["at"] = "fc1"  # block: a Linear layer
    with pytest.raises(RegularizerConfigError, match=r"Linear.*valid targets: an nn.Conv2d.*conv1"):
        place_regularizers(net, cfg, (3, 32, 32))
    with pytest.raises(RegularizerConfigError, match="replaces an nn.Conv2d, got Linear"):
        PushPull2d.from_conv(nn.Linear(4, 4))
    with pytest.raises(RegularizerConfigError, match="already a PushPull2d"):
        to_push_pull(PushPull2d(3, 4, 3))


# --------------------------------------------------------------------------- the CIFAR AlexNet
def test_alexnet_cifar_layout_and_push_pull_first_layer():
    torch.manual_seed(10)
    net = AlexNetCifar()
    assert net.fc1.linear.in_features == 1024 and net.conv1.conv.stride == (2, 2)
    assert all(m.kernel_size == (3, 3) for m in net.modules() if isinstance(m, nn.Conv2d))
    assert set(net.points()) == {"input", "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5",
                                 "pool3", "fc1", "fc2"}
    old = net.conv1.conv
    place_regularizers(net, _reg("pushpull"), (3, 32, 32))
    assert isinstance(net.conv1.conv, PushPull2d) and net.conv1.conv.bias is not None
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(net.conv1.conv.push_response(x), F.relu(old(x)))
    net.eval()
    assert net(x).shape == (2, 10)
    assert math.isfinite(float(net(x).detach().sum()))


# --------------------------------------------------------------------------- built on nn.Conv2d
@pytest.mark.parametrize("kw", [{}, {"stride": 2, "padding": 1, "bias": False},
                                {"padding": "same", "dilation": 2, "groups": 2, "padding_mode": "reflect"}])
def test_the_push_convolution_is_nn_conv2d_s_own(kw):
    """The arguments go to nn.Conv2d's constructor: same checked attributes, the same initial kernel
    and bias from the same seed (bit for bit), registered as this module's ``weight`` / ``bias``."""
    torch.manual_seed(3)
    conv = nn.Conv2d(4, 6, 3, **kw)
    torch.manual_seed(3)
    pp = PushPull2d(4, 6, 3, **kw, scale=2)
    for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                 "padding_mode"):
        assert getattr(pp, name) == getattr(conv, name), name
    assert torch.equal(pp.weight, conv.weight)
    assert (pp.bias is None) == (conv.bias is None) and (pp.bias is None or torch.equal(pp.bias, conv.bias))
    assert list(pp.state_dict()) == list(conv.state_dict())  # checkpoints of earlier runs keep their keys
    torch.manual_seed(4)
    pp.reset_parameters()
    torch.manual_seed(4)
    conv.reset_parameters()
    assert torch.equal(pp.weight, conv.weight)


def test_state_dict_keys_and_loading_a_saved_layer():
    learned = PushPull2d(3, 4, 3, padding=1, train_alpha=True, alpha=0.5)
    assert list(learned.state_dict()) == ["weight", "bias", "alpha_raw"]
    assert [n for n, _ in learned.named_parameters()] == ["weight", "bias", "alpha_raw"]
    assert list(PushPull2d(3, 4, 3, bias=False).state_dict()) == ["weight"]
    saved = {"weight": torch.randn(4, 3, 3, 3), "bias": torch.randn(4), "alpha_raw": torch.rand(4)}
    fresh = PushPull2d(3, 4, 3, padding=1, train_alpha=True)
    fresh.load_state_dict(saved)  # strict: the keys a checkpoint of an earlier run holds
    assert torch.equal(fresh.weight, saved["weight"]) and torch.equal(fresh.alpha_raw, saved["alpha_raw"])


@pytest.mark.parametrize("kw, word", [({"padding_mode": "mirror"}, "padding_mode must be one of"),
                                      ({"groups": 2}, "divisible by groups"),
                                      ({"padding": "same", "stride": 2}, "padding='same'"),
                                      ({"padding": "full"}, "padding string 'full'")])
def test_a_bad_convolution_argument_is_one_config_error(kw, word):
    with pytest.raises(RegularizerConfigError, match=f"push-pull convolution: .*{word}"):
        PushPull2d(3, 4, 3, **kw)

"""Models: output shapes, parameter counts against hand computations, and insertion points."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bioreg.models import VGG11, VGG16, AllConvNet, InsertionError, resnet20, resnet32, resnet44, resnet56
from bioreg.models.points import insert, measure_shapes, replace


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def test_allconvnet_params_and_shape():
    # Table 2.2 of Dutta (2019): 10 / 96 / 96(s2) / 192 / 192 / 192(s2) / 192(valid) / 192(1x1) / 10(1x1)
    expected = (conv(3, 10, 3) + conv(10, 96, 3) + conv(96, 96, 3) + conv(96, 192, 3) + conv(192, 192, 3)
                + conv(192, 192, 3) + conv(192, 192, 3) + conv(192, 192, 1) + conv(192, 10, 1))
    net = AllConvNet()
    assert n_params(net) == expected == 1_293_026
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert n_params(AllConvNet(layer1_width=96)) == expected - conv(3, 10, 3) - conv(10, 96, 3) + conv(3, 96, 3) + conv(96, 96, 3)


def test_allconvnet_point_shapes():
    shapes = measure_shapes(AllConvNet(), (3, 32, 32))
    assert shapes == {
        "input": (3, 32, 32), "layer1": (10, 32, 32), "layer2": (96, 32, 32), "layer3": (96, 16, 16),
        "layer4": (192, 16, 16), "layer5": (192, 16, 16), "layer6": (192, 8, 8), "layer7": (192, 6, 6),
        "layer8": (192, 6, 6), "layer9": (10, 6, 6),
    }


def test_vgg11_params_and_points():
    widths = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    expected = sum(conv(a, b, 3) + 2 * b for a, b in widths) + 512 * 10 + 10  # conv + BN(γ, β) + head
    net = VGG11()
    assert n_params(net) == expected
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    shapes = measure_shapes(net, (3, 32, 32))
    # thesis numbering counts the pools: conv 1,3,5,6,8,9,11,12; pool 2,4,7,10,13
    assert shapes["layer1"] == (64, 32, 32) and shapes["layer2"] == (64, 16, 16)
    assert shapes["layer3"] == (128, 16, 16) and shapes["layer4"] == (128, 8, 8)
    assert shapes["layer5"] == shapes["layer6"] == (256, 8, 8) and shapes["layer7"] == (256, 4, 4)
    assert shapes["layer8"] == (512, 4, 4) and shapes["layer10"] == (512, 2, 2) and shapes["layer13"] == (512, 1, 1)
    assert VGG11.points()["layer5"].producer == "layer5.conv"


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return VGG16()


def test_vgg16_matches_torchvision_and_thesis_indices(vgg16):
    from torchvision.models import vgg16_bn

    net = vgg16
    assert n_params(net) == n_params(vgg16_bn(weights=None, num_classes=10))
    plan = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    cins = [3] + plan[:-1]
    feats = sum(conv(a, b, 3) + 2 * b for a, b in zip(cins, plan, strict=True))
    head = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert n_params(net) == feats + head
    assert isinstance(net.layers[48], nn.Identity) and isinstance(net.layers[51], nn.Identity)
    assert isinstance(net.layers[46], nn.Linear) and isinstance(net.layers[49], nn.Linear)
    shapes = measure_shapes(net, (3, 32, 32))
    assert shapes["48"] == (4096,) and shapes["51"] == (4096,) and shapes["features.2"] == (64, 32, 32)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def _resnet_params(n: int) -> int:
    bn = lambda c: 2 * c  # noqa: E731
    total = conv(3, 16, 3, bias=False) + bn(16)
    cin = 16
    for w in (16, 32, 64):
        for _b in range(n):
            total += conv(cin, w, 3, False) + bn(w) + conv(w, w, 3, False) + bn(w)
            if cin != w:
                total += conv(cin, w, 1, False) + bn(w)  # projection shortcut
            cin = w
    return total + 64 * 10 + 10


@pytest.mark.parametrize("fn,n", [(resnet20, 3), (resnet32, 5), (resnet44, 7), (resnet56, 9)])
def test_resnet_params(fn, n):
    net = fn()
    assert n_params(net) == _resnet_params(n)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 6 * n + 1 + 2  # + stem + 2 shortcuts


def test_resnet20_shapes_and_forward():
    net = resnet20()
    assert n_params(net) == 272_474
    shapes = measure_shapes(net, (3, 32, 32))
    assert shapes["conv1"] == (16, 32, 32) and shapes["layer1"] == (16, 32, 32)
    assert shapes["layer2"] == (32, 16, 16) and shapes["layer3"] == (64, 8, 8)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


class Record(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = None

    def forward(self, x):
        self.seen = tuple(x.shape[1:])
        return x


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("make", [AllConvNet, VGG11, resnet20])
def test_every_point_inserts_where_it_claims(make):
    net = make()
    expected = measure_shapes(net, (3, 32, 32))
    recorders = {}
    for name in net.points():
        recorders[name] = Record()
        insert(net, name, recorders[name])
    net.eval()
    net(torch.rand(2, 3, 32, 32))
    assert {k: r.seen for k, r in recorders.items()} == expected
    assert len(net.regularizers) == len(expected)  # registered, so in state_dict / parameters / print


def test_inserted_module_output_is_used_downstream():
    torch.manual_seed(0)
    net = AllConvNet().eval()
    x = torch.rand(3, 3, 32, 32)
    before = net(x)
    insert(net, "layer9", Zero())
    after = net(x)
    assert before.abs().sum() > 0 and torch.equal(after, torch.zeros_like(after))


def test_vgg16_slot_48_sees_post_relu(vgg16):
    net = copy.deepcopy(vgg16).eval()
    rec = Record()
    seen = []
    insert(net, "48", rec)
    net.layers[48].register_forward_hook(lambda m, i, o: seen.append(float(o.detach().min())))
    net(torch.randn(2, 3, 32, 32))
    assert rec.seen == (4096,) and seen and seen[0] >= 0.0


def test_unknown_point_lists_valid_points():
    with pytest.raises(InsertionError, match=r"unknown insertion point 'layer42'.*valid points: input, layer1, layer2"):
        insert(AllConvNet(), "layer42", Record())


def test_replace_swaps_the_block():
    net = resnet20()
    new = replace(net, "conv1", lambda old: nn.Conv2d(3, 16, 5, padding=2, bias=False))
    assert net.conv1 is new and net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(InsertionError, match="no module that can be replaced"):
        replace(net, "input", lambda old: old)

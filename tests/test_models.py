"""Models: output shapes, parameter counts against hand computations, and insertion points."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bioreg.models import (
    VGG11,
    VGG16,
    AllConvNet,
    InsertionError,
    resnet14,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
)
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
    assert n_params(AllConvNet(layer1_width=96)) == expected - conv(3, 10, 3) - conv(10, 96, 3) + conv(
        3, 96, 3) + conv(96, 96, 3)


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
    assert shapes["layer8"] == (512, 4, 4) and shapes["layer10"] == (512, 2, 2) and shapes["layer13"] == (
        512, 1, 1)
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


@pytest.mark.parametrize("fn,n", [(resnet14, 2), (resnet20, 3), (resnet32, 5), (resnet44, 7), (resnet56, 9)])
def test_resnet_params(fn, n):
    net = fn()
    assert n_params(net) == _resnet_params(n)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 6 * n + 1 + 2  # + stem + 2 shortcuts


def test_resnet14_is_the_14_layer_member_of_the_family():
    """Strisciuglio et al. (2020) §4.3: ResNet-14 = n = 2 blocks per stage; 1 + 6*2 weighted 3x3 convs + fc =
    14."""
    net = resnet14()
    assert net.depth == 14 and net.blocks_per_stage == 2
    convs3 = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs3) + len(linears) == 14
    assert set(net.points()) == {"input", "conv1", "layer1", "layer2", "layer3"}
    assert net.points()["layer3"].producer == "layer3.1.conv2"
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


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


class Shift(nn.Module):
    def forward(self, x):
        return x + 1.0


class Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


# Hand-written activation shapes (C, H, W) / (F,) at every insertion point for a 32x32 input, taken
# from the architectures (not from the code under test):
# All-CNN-C (Dutta 2019, Table 2.2; docs/decisions.md): strides 2 at layers 3 and 6, layer 7 unpadded.
ALLCONV_SHAPES = {
    "input": (3, 32, 32), "layer1": (10, 32, 32), "layer2": (96, 32, 32), "layer3": (96, 16, 16),
    "layer4": (192, 16, 16), "layer5": (192, 16, 16), "layer6": (192, 8, 8), "layer7": (192, 6, 6),
    "layer8": (192, 6, 6), "layer9": (10, 6, 6),
}
# VGG-11 (Dutta 2019, Table 3.1): conv 1,3,5,6,8,9,11,12 (padded 3x3), 2x2 max-pools 2,4,7,10,13.
VGG11_SHAPES = {
    "input": (3, 32, 32), "layer1": (64, 32, 32), "layer2": (64, 16, 16), "layer3": (128, 16, 16),
    "layer4": (128, 8, 8), "layer5": (256, 8, 8), "layer6": (256, 8, 8), "layer7": (256, 4, 4),
    "layer8": (512, 4, 4), "layer9": (512, 4, 4), "layer10": (512, 2, 2), "layer11": (512, 2, 2),
    "layer12": (512, 2, 2), "layer13": (512, 1, 1),
}
# CIFAR ResNets (He et al. 2016, §4.2): 16 maps at 32x32, stages of 16/32/64 maps at 32/16/8 px.
RESNET_SHAPES = {
    "input": (3, 32, 32), "conv1": (16, 32, 32), "layer1": (16, 32, 32), "layer2": (32, 16, 16),
    "layer3": (64, 8, 8),
}


def _vgg16_table() -> dict[str, tuple[str, tuple[int, ...]]]:
    """VGG-16-BN (Singh 2023 §2.3.1), index -> (module type, output shape), written out block by block."""
    t: dict[int, tuple[str, tuple[int, ...]]] = {}

    def conv_bn_relu(i: int, c: int, hw: int) -> None:
        t[i], t[i + 1], t[i + 2] = ("Conv2d", (c, hw, hw)), ("BatchNorm2d", (c, hw, hw)), ("ReLU",
                                                                                           (c, hw, hw))

    for i in (0, 3):
        conv_bn_relu(i, 64, 32)
    t[6] = ("MaxPool2d", (64, 16, 16))
    for i in (7, 10):
        conv_bn_relu(i, 128, 16)
    t[13] = ("MaxPool2d", (128, 8, 8))
    for i in (14, 17, 20):
        conv_bn_relu(i, 256, 8)
    t[23] = ("MaxPool2d", (256, 4, 4))
    for i in (24, 27, 30):
        conv_bn_relu(i, 512, 4)
    t[33] = ("MaxPool2d", (512, 2, 2))
    for i in (34, 37, 40):
        conv_bn_relu(i, 512, 2)
    t[43] = ("MaxPool2d", (512, 1, 1))
    t[44] = ("AdaptiveAvgPool2d", (512, 7, 7))  # torchvision's 7x7 average pool upsamples 1x1 -> 7x7
    t[45] = ("Flatten", (25088,))
    t[46], t[47], t[48] = ("Linear", (4096,)), ("ReLU", (4096,)), ("Identity", (4096,))  # 48: dropout slot
    t[49], t[50], t[51] = ("Linear", (4096,)), ("ReLU", (4096,)), ("Identity", (4096,))  # 51: dropout slot
    t[52] = ("Linear", (10,))
    assert sorted(t) == list(range(53))
    table = {"input": ("Identity", (3, 32, 32))}
    table.update({str(i): v for i, v in t.items()})
    table.update({f"features.{i}": t[i] for i in range(44)})
    return table


VGG16_TABLE = _vgg16_table()


def test_vgg16_shape_table_spot_checks():
    """The generated VGG-16 table agrees with the thesis's printed indices at a few places."""
    assert VGG16_TABLE["features.2"] == ("ReLU", (64, 32, 32)) and VGG16_TABLE["features.43"][1] == (512, 1,
                                                                                                     1)
    assert VGG16_TABLE["40"] == ("Conv2d", (512, 2, 2)) and VGG16_TABLE["52"] == ("Linear", (10,))
    assert VGG16_TABLE["48"] == VGG16_TABLE["51"] == ("Identity", (4096,))
    assert len(VGG16_TABLE) == 1 + 53 + 44


@pytest.fixture(scope="module")
def models(vgg16):
    """Every model built once (32x32, 10 classes), with its hand-written shape table."""
    torch.manual_seed(0)
    return {
        "allconvnet": (AllConvNet(), ALLCONV_SHAPES),
        "vgg11": (VGG11(), VGG11_SHAPES),
        "vgg16": (vgg16, {k: v[1] for k, v in VGG16_TABLE.items()}),
        "resnet20": (resnet20(), RESNET_SHAPES),
        "resnet32": (resnet32(), RESNET_SHAPES),
        "resnet44": (resnet44(), RESNET_SHAPES),
        "resnet56": (resnet56(), RESNET_SHAPES),
    }


def test_vgg16_module_types_match_the_thesis_indices(vgg16):
    for name, (kind, _shape) in VGG16_TABLE.items():
        if name != "input":
            assert type(vgg16.get_submodule(vgg16.points()[name].tap)).__name__ == kind, name


@pytest.mark.parametrize("name",
                         ["allconvnet", "vgg11", "vgg16", "resnet20", "resnet32", "resnet44", "resnet56"])
def test_every_point_inserts_where_it_claims(models, name):
    """A probe inserted at each point sees the hand-written shape; identity probes change nothing."""
    base, expected = models[name]
    assert set(base.points()) == set(expected), "points differ from the architecture's table"
    net = copy.deepcopy(base).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = net(x)
    recorders = {}
    for point in expected:
        recorders[point] = Record()
        insert(net, point, recorders[point])
    with torch.no_grad():
        after = net(x)
    assert {k: r.seen for k, r in recorders.items()} == expected
    assert torch.equal(before, after)  # identity modules at every point leave the output unchanged
    assert len(net.regularizers) == len(expected)  # registered, so in state_dict / parameters / print
    assert all(any(m is r for m in net.regularizers.values()) for r in recorders.values())


@pytest.mark.parametrize("name", ["allconvnet", "vgg11", "resnet20"])
def test_every_point_feeds_the_output(models, name):
    """Scaling the activations at any (non-input-invariant) point changes the logits: it is used
    downstream."""
    base, expected = models[name]
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = copy.deepcopy(base).eval()(x)
    for point in expected:
        net = copy.deepcopy(base).eval()
        insert(net, point, Shift())
        with torch.no_grad():
            assert not torch.allclose(net(x), ref), point


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
    with pytest.raises(InsertionError,
                       match=r"unknown insertion point 'layer42'.*valid points: input, layer1, layer2"):
        insert(AllConvNet(), "layer42", Record())


def test_replace_swaps_the_block():
    net = resnet20()
    new = replace(net, "conv1", lambda old: nn.Conv2d(3, 16, 5, padding=2, bias=False))
    assert net.conv1 is new and net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(InsertionError, match="no module that can be replaced"):
        replace(net, "input", lambda old: old)

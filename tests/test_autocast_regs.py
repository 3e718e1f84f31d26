"""Regularizers under bf16 autocast (``trainer=gpu`` trains with bf16-mixed): their internals run in
float32 (bioreg.layers.base.float32_internals), so

* the bf16 output is the float32 computation on the bf16-rounded input, rounded once to bf16
  (elementwise, same random stream): proof that no internal product ran in bf16;
* its statistics (mean, noise std, fraction of dropped units) match the float32 run on the
  unrounded input within stated tolerances;
* without autocast a float32 input takes the undecorated forward, bit for bit (CPU path unchanged).

CPU autocast (``torch.autocast("cpu", dtype=torch.bfloat16)``) exercises the same code as CUDA's.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bioreg.layers.base import InsertionContext, TrainingState
from bioreg.layers.dropout import CorrDrop, DropBlock, SpatialDropoutMod
from bioreg.layers.noise import (
    CorrelatedGaussian,
    CorrelatedPoisson,
    UncorrelatedGaussian,
    UncorrelatedPoisson,
)
from bioreg.layers.normout import NormOut

SHAPE = (64, 16, 8, 8)


def make(name: str):
    return {
        "ug": lambda: UncorrelatedGaussian(),
        "up": lambda: UncorrelatedPoisson(),
        "cg": lambda: CorrelatedGaussian(),
        "cp": lambda: CorrelatedPoisson(),
        "normout_stmax": lambda: NormOut("max", "spatiotemporal"),
        "normout_tsoftmax": lambda: NormOut("softmax", "temporal", temperature=1.0),
        "corrdrop": lambda: CorrDrop(drop_prob=0.5, block_size=3, fraction=0.5),
        "spatialdropoutmod": lambda: SpatialDropoutMod(p=0.5),
        "dropblock": lambda: DropBlock(drop_prob=0.5, block_size=3),
    }[name]()


NAMES = ["ug", "up", "cg", "cp", "normout_stmax", "normout_tsoftmax", "corrdrop", "spatialdropoutmod",
         "dropblock"]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, SHAPE[1], 3, padding=1)
    a = torch.relu(conv(torch.rand(SHAPE[0], 3, *SHAPE[2:]))).detach() * 4.0  # rates of a few counts
    return conv, a


def bound(name: str, conv: nn.Module):
    reg = make(name)
    state = TrainingState(epoch=5, max_epochs=10)
    if hasattr(reg, "bind"):
        reg.bind(InsertionContext("layer1", conv, SHAPE[1:], state))
    return reg.train()


def run(reg, a, seed=1, autocast=False):
    torch.manual_seed(seed)
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return reg(a)
    return reg(a)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_output_is_the_float32_computation_rounded_once(setup, name):
    conv, a = setup
    ab = a.bfloat16()
    out_bf = run(bound(name, conv), ab, autocast=True)
    assert out_bf.dtype == torch.bfloat16 and out_bf.shape == a.shape
    ref = run(bound(name, conv), ab.float()).bfloat16()
    assert torch.equal(out_bf, ref)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_output_statistics_match_float32(setup, name):
    """Tolerances: means and noise standard deviations within 2 % (bf16 keeps 8 mantissa bits:
    0.4 % per value; the rounded input moves rates by as much), dropped fractions within 0.01."""
    conv, a = setup
    o32 = run(bound(name, conv), a).double()
    o16 = run(bound(name, conv), a.bfloat16(), autocast=True).double()
    a64 = a.double()
    assert o16.mean().item() == pytest.approx(o32.mean().item(), rel=0.02)
    assert (o16 - a64).std().item() == pytest.approx((o32 - a64).std().item(), rel=0.02)
    z32 = ((o32 == 0) & (a64 > 0)).double().mean().item()
    z16 = ((o16 == 0) & (a64 > 0)).double().mean().item()
    assert abs(z16 - z32) < 0.01


@pytest.mark.parametrize("name", NAMES)
def test_float32_without_autocast_is_the_undecorated_forward(setup, name):
    conv, a = setup
    reg = bound(name, conv)
    plain = type(reg).forward.__wrapped__  # the forward without float32_internals
    torch.manual_seed(2)
    want = plain(reg, a)
    assert torch.equal(run(bound(name, conv), a, seed=2), want)


def test_a_model_with_regularizers_trains_a_step_under_bf16_autocast():
    from bioreg.lit.module import Classifier, place_regularizers
    from bioreg.models.allconvnet import AllConvNet

    torch.manual_seed(0)
    net = AllConvNet(num_classes=10, width=8, width2=8, layer1_width=4)
    reg = {"cg": {"at": "layer1", "_target_": "bioreg.layers.noise.CorrelatedGaussian"},
           "no": {"at": "layer2", "_target_": "bioreg.layers.normout.NormOut", "method": "max",
                  "pool": "spatial"}}
    place_regularizers(net, reg, (3, 16, 16))  # 16 x 16: a small spatial Σ, a fast test
    model = Classifier(net, (0.5,) * 3, (0.25,) * 3).train()
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                        if p.grad is not None)

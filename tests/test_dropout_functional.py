"""The functional cores of the stochastic dropout ops (src/bioreg/layers/dropout.py) and their modules.

Each Module is a thin wrapper: with the same random stream (torch's global RNG seeded ``s`` for the
module, a ``torch.Generator`` seeded ``s`` for the core) the two give the same tensor, bit for bit;
``training=False`` is the identity (the very same tensor object).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bioreg.layers.base import InsertionContext, RegularizerConfigError, TrainingState
from bioreg.layers.dropout import (
    CorrDrop,
    DropBlock,
    DropBlockRandom,
    SpatialDropoutMod,
    corr_drop,
    drop_block,
    drop_block_random,
    most_similar_maps,
    similarity_rows,
    spatial_dropout_mod,
)

C, H, W = 8, 7, 7


def _bound(module: nn.Module, epoch: int = 3, max_epochs: int = 6) -> nn.Module:
    torch.manual_seed(5)
    conv = nn.Conv2d(3, C, 3)
    module.bind(InsertionContext(point="layerX", producer=conv, shape=(C, H, W),
                                 state=TrainingState(epoch=epoch, max_epochs=max_epochs)))
    return module.train()


def _core_of(m: nn.Module):
    """The functional call equivalent to module ``m`` in training (state read from the module)."""
    if isinstance(m, SpatialDropoutMod):
        return lambda x, training=True, g=None: spatial_dropout_mod(
            x, m.ctx.producer.weight.detach(), m.p, training, generator=g)
    if isinstance(m, CorrDrop):
        return lambda x, training=True, g=None: corr_drop(
            x, m.ctx.producer.weight.detach(), m.current_drop_prob(), m.block_size, m.fraction, training,
            generator=g)
    if isinstance(m, DropBlockRandom):
        return lambda x, training=True, g=None: drop_block_random(
            x, m.current_drop_prob(), m.block_size, m.fraction, training, generator=g)
    return lambda x, training=True, g=None: drop_block(x, m.current_drop_prob(), m.block_size, training,
                                                       generator=g)


MODULES = {
    "spatialdropoutmod": lambda: SpatialDropoutMod(0.4),
    "dropblock": lambda: DropBlock(0.4, 3),  # linear schedule: 0.4 * 3/5 at epoch 3 of 6
    "dropblock_fixed": lambda: DropBlock(0.2, 2, schedule="none"),
    "dropblockrandom": lambda: DropBlockRandom(0.4, 3),
    "corrdrop": lambda: CorrDrop(0.4, 3),
    "corrdrop_quarter": lambda: CorrDrop(0.2, 2, schedule="none", fraction=0.25),
}


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("seed", [0, 17])
def test_core_with_a_seeded_generator_equals_the_module(name: str, seed: int) -> None:
    m = _bound(MODULES[name]())
    x = torch.rand(6, C, H, W) + 0.1
    torch.manual_seed(seed)
    y_mod = m(x)
    state = torch.get_rng_state()
    y_core = _core_of(m)(x, g=torch.Generator().manual_seed(seed))
    assert torch.equal(state, torch.get_rng_state())  # a generator leaves the global RNG alone
    assert torch.equal(y_mod, y_core)
    assert (y_mod == 0).any() and not torch.equal(y_mod, x)  # something was dropped: the check has teeth
    torch.manual_seed(seed)
    assert torch.equal(_core_of(m)(x), y_mod)  # no generator: the global RNG, as the module


@pytest.mark.parametrize("name", list(MODULES))
def test_the_generator_drives_every_random_choice(name: str) -> None:
    m = _bound(MODULES[name]())
    x = torch.rand(6, C, H, W) + 0.1
    core = _core_of(m)
    a, b = (core(x, g=torch.Generator().manual_seed(1)) for _ in range(2))
    assert torch.equal(a, b)
    outs = {tuple(core(x, g=torch.Generator().manual_seed(s)).flatten().tolist()) for s in range(2, 6)}
    assert len(outs) > 1


@pytest.mark.parametrize("name", list(MODULES))
def test_core_is_the_identity_when_not_training(name: str) -> None:
    m = _bound(MODULES[name]())
    x = torch.rand(4, C, H, W)
    state = torch.get_rng_state()
    assert _core_of(m)(x, training=False) is x
    assert torch.equal(state, torch.get_rng_state())  # nothing drawn
    assert corr_drop(x, None, 0.3, 3, training=False) is x  # no kernels needed in eval
    assert spatial_dropout_mod(torch.rand(2, 5), None, 0.5, training=False).shape == (2, 5)  # nor a 4-D input


def test_zero_probability_is_the_identity_in_training() -> None:
    x = torch.rand(2, C, H, W)
    assert drop_block(x, 0.0, 3) is x and drop_block_random(x, 0.0, 3) is x and corr_drop(x, None, 0.0,
                                                                                          3) is x
    assert spatial_dropout_mod(x, None, 0.0) is x


def test_core_rejects_bad_input_with_reasons() -> None:
    x = torch.rand(2, C, 4, 4)
    w = torch.randn(C, 3, 3, 3)
    with pytest.raises(RegularizerConfigError, match=r"DropBlock: block_size must be in \[1, 4\]"):
        drop_block(x, 0.3, 5)
    with pytest.raises(RegularizerConfigError, match=r"\(N, C, H, W\)"):
        drop_block(torch.rand(2, C), 0.3, 1)
    with pytest.raises(RegularizerConfigError, match=r"CorrDrop needs the 8 kernels .* got none"):
        corr_drop(x, None, 0.3, 2)
    with pytest.raises(RegularizerConfigError,
                       match=r"SpatialDropoutMod needs the 8 kernels .* shape \(4, 3, 3, 3\)"):
        spatial_dropout_mod(x, w[:4], 0.5)
    with pytest.raises(RegularizerConfigError, match=r"DropBlockRandom: drop_prob must be in \[0, 0\.5\]"):
        drop_block_random(x, 0.6, 2)
    with pytest.raises(RegularizerConfigError, match=r"p must be in \[0, 1\)"):
        spatial_dropout_mod(x, w, 1.0)


def test_most_similar_maps_ranks_by_eq_2_16() -> None:
    w = torch.randn(C, 3, 3, 3)
    chosen = torch.tensor([0, 5, 5, 2])
    idx = most_similar_maps(w, chosen, 3, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (4, 3) and torch.equal(idx[:, 0], chosen)  # the chosen map first
    sim = similarity_rows(w, torch.arange(C))
    for r, row in zip(chosen.tolist(), idx.tolist(), strict=True):
        others = sim[r].clone()
        others[r] = -2.0
        assert set(row[1:]) == set(torch.topk(others, 2).indices.tolist())
